"""Shadow scoring inside the model that answers: the hook tritonpipe/backend/model.py calls.

After each ``execute`` has its answers, each answered request is sampled with probability
``sample``; a sampled request's tensors (the scoring step's inputs as the champion saw them, so
the same feature vector, and what the log records) go on a bounded queue. One thread runs the
challenger's plan (``shadow.json``) on them and writes its records to the prediction log's sink,
tagged ``shadow: true`` and with the challenger's version, under the champion's request id. The
answer never waits for the challenger and never holds its outputs; a full queue skips the
sample (counted), so a slow challenger costs throughput only through the shared CPU.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tritonpipe.backend.runtime import Runner, StepFailed
from tritonpipe.predlog.logger import PredictionLogger
from tritonpipe.predlog.sinks import Record, make_sink
from tritonpipe.predlog.triton import _records
from tritonpipe.shadow.build import SHADOW_FILE

log = logging.getLogger("tritonpipe.shadow")
_STOP = None


def shadow_records(config: dict[str, Any], entry: dict[str, Any]) -> list[Record]:
    """The log's records for one challenger answer: the champion's record layout, tagged."""
    records = _records(config, entry)
    for record in records:
        record["shadow"] = True
        record["latency_ms"] = entry.get("latency_ms")
    return records


class ShadowScoring:
    """Samples answered requests and scores them with the challenger on its own thread."""

    batch_size = 64

    def __init__(
        self,
        folder: Path,
        predlog_config: dict[str, Any],
        base: Path,
        *,
        seed: int | None = None,
    ) -> None:
        """``folder``: the champion model's version folder (``shadow.json``); ``base``: the
        folder the log's relative paths start from. The champion must return ``carry`` (the
        tensors the challenger reads and the log records) beside its outputs."""
        config = json.loads((folder / SHADOW_FILE).read_text())
        self.sample = float(config["sample"])
        self.version = str(config["version"])
        self.runner = Runner(config["plan"], folder, threads=1)
        self.needs = [d["tensor"] for d in config["plan"]["inputs"]]
        logged = [*predlog_config["entity_keys"], *filter(None, [predlog_config.get("features")])]
        self.carry = list(dict.fromkeys([*self.needs, *logged]))
        self.record_config = {**predlog_config, "model_version": self.version}
        self.random = random.Random(seed)
        self.sampled = self.skipped = self.scored = self.failed = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=int(config["queue_size"]))
        self.logger = PredictionLogger(
            make_sink(predlog_config["sink"], base=base),
            to_records=lambda entries: [
                r for e in entries for r in shadow_records(self.record_config, e)
            ],
            queue_size=predlog_config.get("queue_size", 10_000),
        )
        self._thread = threading.Thread(target=self._run, name="tritonpipe-shadow", daemon=True)
        self._thread.start()

    @classmethod
    def from_folder(
        cls, folder: Path, predlog_config: dict[str, Any] | None, base: Path
    ) -> ShadowScoring | None:
        if not (folder / SHADOW_FILE).is_file() or predlog_config is None:
            return None
        return cls(folder, predlog_config, base)

    def submit(self, ids: Sequence[str], arrays: Sequence[Any], results: Sequence[Any]) -> None:
        """Queue the sampled answered requests of one execute; never blocks, never raises."""
        now = time.time()
        for request_id, inputs, result in zip(ids, arrays, results, strict=True):
            if isinstance(result, StepFailed) or self.random.random() >= self.sample:
                continue
            self.sampled += 1
            tensors = {**inputs, **result}
            item = (request_id, now, {t: tensors[t] for t in self.carry if t in tensors})
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.skipped += 1

    def submit_rows(self, ids: Sequence[str], tensors: Mapping[str, Any]) -> None:
        """Queue the sampled rows of one answered batch (row ``i`` is request ``ids[i]``)."""
        now = time.time()
        carried = [t for t in self.carry if t in tensors]
        for i, request_id in enumerate(ids):
            if self.random.random() >= self.sample:
                continue
            self.sampled += 1
            item = (request_id, now, {t: tensors[t][i : i + 1] for t in carried})
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.skipped += 1

    def _take(self) -> tuple[list[Any], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch, stop = [first], False
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                self._score(batch)
            if stop:
                return

    def _score(self, batch: list[Any]) -> None:
        start = time.perf_counter()
        try:
            outs = self.runner.run_requests([{t: a[t] for t in self.needs} for _, _, a in batch])
        except Exception as exc:  # noqa: BLE001 - the challenger must never hurt serving
            self.failed += len(batch)
            log.warning("shadow %s failed on %d requests: %r", self.version, len(batch), exc)
            return
        per_request_ms = (time.perf_counter() - start) * 1000 / len(batch)
        entries = []
        for (request_id, at, tensors), out in zip(batch, outs, strict=True):
            if isinstance(out, StepFailed):
                self.failed += 1
                continue
            self.scored += 1
            entries.append(
                {
                    "request_id": request_id,
                    "timestamp": at,
                    "inputs": tensors,
                    "outputs": out,
                    "latency_ms": per_request_ms,
                }  # fmt: skip
            )
        if entries:
            self.logger.log(entries)

    def close(self, timeout_s: float = 30.0) -> None:
        """Score what is queued, then flush the log."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        self.logger.close()
