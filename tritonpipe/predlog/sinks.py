"""Where prediction records go: one small interface, implementations chosen by ``type:``.

parquet  a folder of part files, rolled by rows or seconds; each part is written to a temporary
         name and renamed, so readers (pandas) only ever see complete files.
redis    a Redis Stream (XADD, one JSON field per record, capped at ``maxlen`` entries).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tritonpipe.errors import PredictionLogError

Record = dict[str, Any]


class Sink(ABC):
    """Receives batches of records from the logger's writer thread; may raise on failure."""

    type: str

    @abstractmethod
    def write(self, records: Sequence[Record]) -> None: ...

    def flush(self) -> None:  # noqa: B027 - optional: sinks that buffer override it
        """Make everything written so far durable and visible."""

    def close(self) -> None:
        self.flush()


class ParquetSink(Sink):
    """Parquet parts rolled by rows or seconds, plus a JSON-lines journal of the open part.

    Each batch is appended to the journal and handed to the OS before ``write`` returns, so a
    record survives even if the process is killed before its part is rolled (Triton exits without
    unloading models when its exit timeout expires); readers merge parts and journals.
    """

    type = "parquet"

    def __init__(self, path: Path, *, roll_rows: int = 10_000, roll_seconds: float = 5.0) -> None:
        self.path = path
        self.roll_rows = roll_rows
        self.roll_seconds = roll_seconds
        self._pending: list[Record] = []
        self._opened = time.monotonic()
        self._prefix = f"part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        path.mkdir(parents=True, exist_ok=True)
        self._journal_path = path / f"journal-{self._prefix}.jsonl"
        self._journal = self._journal_path.open("a", encoding="utf-8")

    def write(self, records: Sequence[Record]) -> None:
        self._journal.write("".join(json.dumps(r, default=str) + "\n" for r in records))
        self._journal.flush()
        self._pending.extend(records)
        too_old = time.monotonic() - self._opened >= self.roll_seconds
        if len(self._pending) >= self.roll_rows or (self._pending and too_old):
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            self._opened = time.monotonic()
            return
        import pandas as pd

        frame = pd.DataFrame(self._pending)
        final = self.path / f"{self._prefix}-{self._seq:06d}.parquet"
        tmp = final.with_name(f".{final.name}.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.rename(final)  # atomic: readers never see a half-written part
        self._journal.seek(0)
        self._journal.truncate()  # the part holds these records now
        self._seq += 1
        self._pending = []
        self._opened = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._journal.close()
        if self._journal_path.stat().st_size == 0:
            self._journal_path.unlink()


class RedisStreamSink(Sink):
    type = "redis"

    def __init__(self, url: str, stream: str, *, maxlen: int = 1_000_000) -> None:
        import redis

        self.stream = stream
        self.maxlen = maxlen
        self._client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def write(self, records: Sequence[Record]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for record in records:
            pipe.xadd(
                self.stream,
                {"record": json.dumps(record, default=str)},
                maxlen=self.maxlen,
                approximate=True,
            )
        pipe.execute()

    def close(self) -> None:
        self._client.close()


def make_sink(config: Mapping[str, Any], base: Path | None = None) -> Sink:
    """A sink from its config; relative parquet paths are relative to ``base``."""
    kind = config.get("type")
    try:
        if kind == "parquet":
            path = Path(str(config["path"]))
            if not path.is_absolute() and base is not None:
                path = base / path
            return ParquetSink(
                path,
                roll_rows=int(config.get("roll_rows", 10_000)),
                roll_seconds=float(config.get("roll_seconds", 5.0)),
            )
        if kind == "redis":
            return RedisStreamSink(
                str(config["url"]),
                str(config.get("stream", "tritonpipe:predictions")),
                maxlen=int(config.get("maxlen", 1_000_000)),
            )
    except KeyError as exc:
        raise PredictionLogError(f"prediction log sink {kind}: missing field {exc}") from None
    raise PredictionLogError(f"prediction log sink type {kind!r}: choose parquet or redis")
