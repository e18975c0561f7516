"""Prediction logging inside Triton's Python backend: the hook tritonpipe/backend/model.py calls.

The builder writes the config parameter ``tritonpipe.predlog`` (JSON: sink, pipeline, model and
version, which inputs are entity keys and the feature vector) on the last step of a logging
ensemble. After each ``execute`` the hook logs its answered requests as one entry: a Parquet
sink's journal has their records before ``execute`` returns the answers (see
tritonpipe/predlog/logger.py); a Redis sink gets them from the writer thread. Records written and
sink errors are Triton custom metrics ``tritonpipe_predlog_records_total`` /
``tritonpipe_predlog_errors_total`` (label ``sink``), synced by the writer thread (after every
batch and every tick) and at finalize, never from execute: each update is a message to the
server, and the one execute made cost its request milliseconds.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.predlog.logger import PredictionLogger
from tritonpipe.predlog.sinks import Record, make_sink

PARAMETER = "tritonpipe.predlog"


def _value(value: Any, binary: bool) -> Any:
    """A BYTES element as a log value: text as ``str`` (as the records contract stores it;
    bytes that are not UTF-8 are replaced, a log never fails on them), binary as base64."""
    if not isinstance(value, bytes):
        return value
    if binary:
        return base64.b64encode(value).decode()
    return value.decode(errors="replace")


def _column(array: np.ndarray[Any, Any], rows: int, binary: bool = False) -> list[Any]:
    """Per row, its value: a scalar for one element per row, else a list (bytes as text, or
    base64 for a ``binary`` output)."""
    per_row = np.asarray(array).reshape(rows, -1)
    values = per_row.tolist()
    if per_row.dtype == np.object_:
        values = [[_value(v, binary) for v in row] for row in values]
    return [v[0] for v in values] if per_row.shape[1] == 1 else values


def _records(config: dict[str, Any], entry: dict[str, Any]) -> list[Record]:
    """One record per row of an answered request (columns converted once, not per row)."""
    inputs, outputs = entry["inputs"], entry["outputs"]
    rows = len(next(iter(outputs.values()))) if outputs else 0
    if not rows:
        return []
    columns = {f"entity_{k}": _column(inputs[k], rows) for k in config["entity_keys"]}
    if config.get("features"):
        features = np.asarray(inputs[config["features"]]).reshape(rows, -1).tolist()
        columns["features"] = features
    binary = set(config.get("binary", []))
    columns.update({f"output_{n}": _column(v, rows, n in binary) for n, v in outputs.items()})
    base = {
        "request_id": entry["request_id"],
        "timestamp": entry["timestamp"],
        "pipeline": config["pipeline"],
        "model": config["model"],
        "model_version": config["model_version"],
    }
    if entry.get("latency_ms") is not None:
        base["latency_ms"] = float(entry["latency_ms"])
    names = list(columns)
    return [
        {**base, "row": row, **dict(zip(names, values, strict=True))}
        for row, values in enumerate(zip(*columns.values(), strict=True))
    ]


class TritonPredictionLog:
    """The hook object; built only when the model's config has ``tritonpipe.predlog``."""

    def __init__(self, config: dict[str, Any], repository: Path, pb_utils: Any) -> None:
        self.config = config
        self.pb_utils = pb_utils
        sink = make_sink(config["sink"], base=repository.parent)
        self._synced = {"records": 0, "errors": 0}
        self._metrics: dict[str, Any] = {}
        self._families: list[Any] = []
        self._lock = threading.Lock()
        self.sink_type: str = sink.type
        labels = {"sink": sink.type}
        for key, help_text in (
            ("records", "Prediction-log records written by tritonpipe"),
            ("errors", "Prediction-log records lost to sink errors or a full queue"),
        ):
            family = pb_utils.MetricFamily(
                name=f"tritonpipe_predlog_{key}_total",
                description=help_text,
                kind=pb_utils.MetricFamily.COUNTER,
            )
            self._families.append(family)  # a Metric fails once its family is garbage
            self._metrics[key] = family.Metric(labels=labels)
        self.logger = PredictionLogger(
            sink,
            to_records=lambda entries: [r for e in entries for r in _records(config, e)],
            queue_size=config["queue_size"],
            on_progress=self.sync_metrics,
        )

    @classmethod
    def from_parameters(
        cls, params: dict[str, str], repository: Path, pb_utils: Any
    ) -> TritonPredictionLog | None:
        text = params.get(PARAMETER)
        return cls(json.loads(text), repository, pb_utils) if text else None

    def warm(self) -> bool:
        """Connect the sink and import what its first write needs, at load, not on the writer
        thread during the first requests."""
        return self.logger.warm(self.pb_utils.Logger.log_warn)

    def tensors(self) -> list[str]:
        """The pipeline tensors each record reads besides the outputs: entity keys, features."""
        features = self.config.get("features")
        return [*self.config["entity_keys"], *([features] if features else [])]

    def after_execute(
        self,
        requests: list[Any],
        arrays: list[Any],
        responses: list[Any],
        ids: list[str] | None = None,
        latency_ms: float | None = None,
    ) -> None:
        """Log the answered requests of one execute; never raises into the prediction.

        ``ids``: each request's id when the caller chose them (a shadow reuses them);
        ``latency_ms``: the time the execute spent in the pipeline, logged on each record."""
        now = time.time()
        entries = []
        chosen = ids if ids is not None else [None] * len(requests)
        for request, inputs, response, given in zip(
            requests, arrays, responses, chosen, strict=False
        ):
            try:
                if response.has_error():
                    continue
                outputs = {t.name(): t.as_numpy() for t in response.output_tensors()}
                entry = {
                    "request_id": given or request.request_id() or uuid.uuid4().hex,
                    "timestamp": now,
                    "inputs": inputs,
                    "outputs": outputs,
                    "latency_ms": latency_ms,
                }
            except Exception:  # noqa: BLE001 - counted as a logging error, the answer stands
                self.logger.errors += 1
                continue
            entries.append(entry)
        if entries:
            self.logger.log(entries)

    def sync_metrics(self) -> None:
        """Add what was written or lost since the last sync to the Triton counters."""
        with self._lock:
            self._sync()

    def _sync(self) -> None:
        current = {
            "records": self.logger.written,
            "errors": self.logger.errors + self.logger.dropped,
        }
        for key, value in current.items():
            delta = value - self._synced[key]
            if delta > 0:
                try:
                    self._metrics[key].increment(delta)
                except Exception:  # noqa: BLE001 - metrics are best effort, never the answer
                    return
                self._synced[key] = value

    def finalize(self) -> None:
        self.logger.close()
        self.sync_metrics()
