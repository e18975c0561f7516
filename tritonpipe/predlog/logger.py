"""PredictionLogger: one writer in front of a sink; ``log`` never raises into a prediction.

A local sink (``Sink.local``: a Parquet folder's journal) is written on the caller's thread, so
the record is on disk before the answer it logs leaves: a server killed right after answering
loses no record. The background thread then only does the sink's time-based work (rolling parts).

A remote sink (a Redis Stream) sits behind a bounded queue: ``log`` never blocks, a full queue
drops the entry and counts it, and the background thread batches what is queued, turns it into
records and writes them. Either way a sink failure is counted, warned about (at most every few
seconds) and logging carries on. ``close`` drains the queue and flushes the sink.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tritonpipe.predlog.sinks import Record, Sink

log = logging.getLogger("tritonpipe.predlog")
Entry = Any
_STOP = object()
_TICK = object()  # a local sink's part is due: roll it now


class PredictionLogger:
    tick_s = 0.25  # the writer's wait for entries, and so how often a sink's ``tick`` runs

    def __init__(
        self,
        sink: Sink,
        *,
        to_records: Callable[[Entry], list[Record]] = lambda e: [e],
        queue_size: int = 10_000,
        batch_size: int = 512,
        warn_every_s: float = 5.0,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.sink = sink
        self.to_records = to_records
        self.batch_size = batch_size
        self.warn_every_s = warn_every_s
        self.on_progress = on_progress  # called by the writer after each batch and tick
        self.written = 0  # records the sink accepted
        self.errors = 0  # records lost to sink errors
        self.dropped = 0  # entries refused because the queue was full
        self._queue: queue.Queue[Entry] = queue.Queue(maxsize=queue_size)
        self._last_warning = 0.0
        self._direct = sink.local
        self._woken = False
        self._direct_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tritonpipe-predlog", daemon=True)
        self._thread.start()

    def warm(self, say: Callable[[str], None] | None = None) -> bool:
        """Warm the sink (tritonpipe.predlog.sinks.Sink.warm); a failure is said (``say``, else
        the module's log), not raised: the sink may come up later, and each write tries it
        again. False when it failed."""
        try:
            self.sink.warm()
        except Exception as exc:  # noqa: BLE001 - a sink that is down must not stop a load
            message = f"prediction log sink '{self.sink.type}' could not be warmed: {exc!r}"
            (say or log.warning)(f"{message}; its writes will try it again")
            return False
        return True

    def log(self, entry: Entry) -> None:
        """Write (local sink) or queue one entry; never raises, never waits on a remote sink."""
        if self._direct:
            with self._direct_lock:
                self._write([entry])
            if not self._woken and self.sink.due():  # full or old: wake the writer to roll
                self._woken = True
                self._queue.put_nowait(_TICK)
            return
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1

    def _take(self) -> tuple[list[Entry], bool]:
        """Wait up to ``tick_s`` for entries; return (batch, stop requested)."""
        try:
            first = self._queue.get(timeout=self.tick_s)
        except queue.Empty:
            return [], False
        if first is _TICK:
            self._woken = False
            return [], False
        batch, stop = [], first is _STOP
        if not stop:
            batch.append(first)
        while len(batch) < self.batch_size and not stop:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
            else:
                batch.append(item)
        return batch, stop

    def _write(self, entries: Sequence[Entry]) -> None:
        records: list[Record] = []
        try:
            for entry in entries:
                records.extend(self.to_records(entry))
            if records:
                self.sink.write(records)
            self.written += len(records)
        except Exception as exc:  # noqa: BLE001 - a sink failure must never reach a prediction
            self.errors += max(len(records), len(entries))
            self._warn(f"prediction log sink '{self.sink.type}' failed: {exc!r}")

    def _flush(self, tick: bool = False) -> None:
        try:
            (self.sink.tick if tick else self.sink.flush)()
        except Exception as exc:  # noqa: BLE001 - counted and warned like a write failure
            self.errors += 1
            self._warn(f"prediction log sink '{self.sink.type}' flush failed: {exc!r}")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= self.warn_every_s:
            self._last_warning = now
            log.warning("%s (written %d, errors %d)", message, self.written, self.errors)

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                self._write(batch)
            else:
                self._flush(tick=True)  # idle: time-based work (a local sink rolls its parts)
            if self.on_progress is not None:  # also idle: errors are counted on other threads
                with contextlib.suppress(Exception):  # progress reporting is best effort
                    self.on_progress()
            if stop:
                return

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued so far, flush and close the sink."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
        self._flush()
        try:
            self.sink.close()
        except Exception as exc:  # noqa: BLE001
            self._warn(f"prediction log sink '{self.sink.type}' close failed: {exc!r}")
