"""Where prediction records go: one small interface, implementations chosen by ``type:``.

parquet  a folder of part files, rolled by rows or seconds; each part is written to a temporary
         name and renamed, so readers (pandas) only ever see complete files.
redis    a Redis Stream (XADD, one JSON field per record, capped at ``maxlen`` entries).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from tritonpipe.errors import PredictionLogError

Record = dict[str, Any]


class Sink(ABC):
    """Receives batches of records from the logger's writer thread; may raise on failure."""

    type: str
    # True when ``write`` is a cheap local append: the logger then writes on the caller's thread,
    # so a record is durable before the answer it logs is sent.
    local = False

    @abstractmethod
    def write(self, records: Sequence[Record]) -> None: ...

    def flush(self) -> None:  # noqa: B027 - optional: sinks that buffer override it
        """Make everything written so far durable and visible."""

    def warm(self) -> None:  # noqa: B027 - optional: sinks with a cold first write override it
        """Do at load what the first write would (connect, import): so the first request after
        load is not the one that pays for it. May raise; the caller warns and carries on."""

    def due(self) -> bool:
        """A local sink has work for ``tick`` now (the logger then wakes its writer)."""
        return False

    def tick(self) -> None:
        """Called by the logger's writer thread when idle, about every
        ``PredictionLogger.tick_s``: time-based work (rolling parts); by default a flush."""
        self.flush()

    def close(self) -> None:
        self.flush()


class ParquetSink(Sink):
    """Parquet parts rolled by rows or seconds, each written from a JSON-lines journal.

    ``write`` appends the records to the open journal and hands them to the OS before it returns,
    so it is cheap enough for the request path and a record survives the process being killed
    (Triton exits without unloading models when its exit timeout expires). ``roll`` (from
    ``tick`` or ``flush``) starts a new journal, writes the old one's records as a part (temporary
    name, then rename) and removes that journal; readers merge parts and journals. Thread-safe.
    """

    type = "parquet"
    local = True

    def __init__(
        self,
        path: Path,
        *,
        roll_rows: int = 10_000,
        roll_seconds: float = 5.0,
        idle_seconds: float = 1.0,
    ) -> None:
        self.path = path
        self.roll_rows = roll_rows
        self.roll_seconds = roll_seconds
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()  # the open journal and its records
        self._roll_lock = threading.Lock()  # one roll at a time, so parts keep their order
        self._prefix = f"part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        path.mkdir(parents=True, exist_ok=True)
        self._open_journal()

    def warm(self) -> None:
        """The first roll imports pandas and pyarrow on the writer thread, which would hold the
        GIL for a second of serving: import them at load instead."""
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

    def _open_journal(self) -> None:
        self._journal_path = self.path / f"journal-{self._prefix}-{self._seq:06d}.jsonl"
        self._journal = self._journal_path.open("ab")
        self._pending: list[Record] = []
        self._opened = self._written = time.monotonic()

    def write(self, records: Sequence[Record]) -> None:
        lines = b"".join(orjson.dumps(r, default=str) + b"\n" for r in records)
        with self._lock:
            self._journal.write(lines)
            self._journal.flush()
            self._pending.extend(records)
            self._written = time.monotonic()

    def due(self) -> bool:
        """The open journal should become a part: enough rows, old enough, or writes paused."""
        now = time.monotonic()
        with self._lock:
            return bool(self._pending) and (
                len(self._pending) >= self.roll_rows
                or now - self._opened >= self.roll_seconds
                or now - self._written >= self.idle_seconds
            )

    def tick(self) -> None:
        if self.due():
            self.roll()

    def roll(self) -> None:
        """Write the open journal's records as a part; writers go on into a new journal."""
        with self._roll_lock:
            with self._lock:
                if not self._pending:
                    return
                records, journal, journal_path = self._pending, self._journal, self._journal_path
                final = self.path / f"{self._prefix}-{self._seq:06d}.parquet"
                self._seq += 1
                self._open_journal()
            journal.close()
            import pandas as pd

            tmp = final.with_name(f".{final.name}.tmp")
            pd.DataFrame(records).to_parquet(tmp, index=False)
            tmp.rename(final)  # atomic: readers never see a half-written part
            journal_path.unlink()  # the part holds these records now

    def flush(self) -> None:
        self.roll()

    def close(self) -> None:
        self.roll()
        with self._lock:
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

    def warm(self) -> None:
        """Open the connection and run a pipeline now, as the first write would on the writer
        thread (holding the GIL the serving thread needs for milliseconds)."""
        self._client.pipeline(transaction=False).ping().execute()

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
