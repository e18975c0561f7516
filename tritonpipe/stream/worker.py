"""The stream worker: read a micro-batch, decode, score, write outputs, then acknowledge.

At least once: an event is acknowledged only after its output (or dead letter) is written, so a
worker killed at any point leaves it pending for another worker; the sink's write-once by event
id turns the redelivery into a no-op. Failures split two ways: an event the input is at fault
for (undecodable, or rejected by the pipeline as invalid) is dead-lettered at once, since a retry
cannot help; any other failure is left unacknowledged and retried until ``max_attempts``
deliveries, then dead-lettered. Either way the stream moves on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritonpipe.errors import PipelineError, TritonPipeError
from tritonpipe.stream.bus import Message, Output, Sink, Source
from tritonpipe.stream.config import JobConfig
from tritonpipe.stream.metrics import Metrics
from tritonpipe.stream.scoring import Result, Scorer
from tritonpipe.tensors import Array
from tritonpipe.tensors import dtype as tensor_dtype

log = logging.getLogger("tritonpipe.stream")
Hook = Callable[[list[dict[str, Any]]], None]


class Poison(TritonPipeError):
    """An event that cannot become pipeline inputs; the message is the dead letter's reason."""


@dataclass(kw_only=True)
class Event:
    message: Message
    id: str
    time: float | None
    fields: dict[str, Any]
    inputs: dict[str, Array] = field(default_factory=dict)


@dataclass(kw_only=True)
class Counts:
    scored: int = 0
    duplicates: int = 0
    dead: int = 0
    retried: int = 0
    bus_errors: int = 0  # steps a bus error failed (retried; see Worker.run)


def decode(config: JobConfig, message: Message) -> Event:
    """Payload -> event fields -> one-row pipeline inputs; Poison names what is wrong."""
    try:
        if config.format == "json":
            fields = json.loads(message.body)
        else:
            import msgpack

            fields = msgpack.unpackb(message.body, raw=False)
    except Exception as exc:  # every decoder error means the same: not this format
        raise Poison(f"payload is not {config.format}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(fields, dict):
        raise Poison(f"payload is a {type(fields).__name__}, not a {config.format} object")
    event_id = str(fields.get(config.id_field, message.id))
    stamp = fields.get(config.time_field) if config.time_field else None
    event = Event(
        message=message,
        id=event_id,
        time=float(stamp) if isinstance(stamp, int | float) else None,
        fields=fields,
    )
    for name, spec in config.inputs.items():
        if spec.field not in fields:
            raise Poison(f"field '{spec.field}' (input '{name}') is missing")
        value = fields[spec.field]
        try:
            dtype = np.dtype(tensor_dtype(spec.dtype).numpy)
            if dtype == np.dtype(object):
                value = value.encode() if isinstance(value, str) else bytes(value)
                array = np.array([value], dtype=object).reshape(1, -1)
            else:
                array = np.asarray(value, dtype=dtype)[None, ...]
                array = array.reshape(1, -1) if array.ndim == 1 else array
        except (TypeError, ValueError) as exc:
            raise Poison(
                f"field '{spec.field}' (input '{name}') is not {spec.dtype}: {exc}"
            ) from exc
        event.inputs[name] = array
    return event


class Worker:
    """One member of the consumer group; ``run`` until ``stop`` is set (SIGTERM sets it)."""

    def __init__(
        self,
        config: JobConfig,
        source: Source,
        sink: Sink,
        scorer: Scorer,
        *,
        consumer: str,
        metrics: Metrics | None = None,
        predlog: Any = None,
        before_score: Hook | None = None,
    ) -> None:
        self.config, self.source, self.sink, self.scorer = config, source, sink, scorer
        self.consumer = consumer
        self.metrics = metrics
        self.predlog = predlog  # a tritonpipe.predlog.PredictionLogger, or None
        self.before_score = before_score  # e.g. fresh features: push events into windows
        self.counts = Counts()
        self.bus_retry_s = 60.0
        self.stop = threading.Event()
        self._lag_at = 0.0

    def _collect(self) -> list[Message]:
        """Up to ``max_events`` messages, waiting at most ``max_wait_ms`` after the first."""
        batch = self.config.batch
        messages = self.source.read(batch.max_events, 200)  # short: notice ``stop`` soon
        deadline = time.monotonic() + batch.max_wait_ms / 1000
        while messages and len(messages) < batch.max_events and not self.stop.is_set():
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                break
            messages += self.source.read(batch.max_events - len(messages), left)
        return messages

    def step(self) -> int:
        """One micro-batch end to end; returns how many messages it handled."""
        messages = self._collect()
        if messages:
            self.handle(messages)
        now = time.monotonic()
        if self.metrics is not None and now - self._lag_at > 1.0:
            self._lag_at = now
            self.metrics.lag(self.source.lag())
            self.metrics.partition_lag(self.source.partition_lag())
        return len(messages)

    def handle(self, messages: Sequence[Message]) -> None:
        events: list[Event] = []
        dead: list[tuple[Message, str]] = []
        for message in messages:
            try:
                events.append(decode(self.config, message))
            except Poison as exc:
                dead.append((message, f"decode: {exc}"))
        results = self._score(events)
        outputs: list[tuple[Event, dict[str, Any]]] = []
        retry: list[Message] = []
        for event, result in zip(events, results, strict=True):
            if not isinstance(result, PipelineError):
                outputs.append((event, self._record(event, result)))
            elif result.invalid or event.message.deliveries >= self.config.max_attempts:
                dead.append(
                    (event.message, f"pipeline (attempt {event.message.deliveries}): {result}")
                )
            else:
                retry.append(event.message)
        new = self.sink.write([Output(key=e.id, body=json.dumps(r).encode()) for e, r in outputs])
        for message, reason in dead:
            self.sink.dead_letter(message, reason)
        done = [e.message for e, _ in outputs] + [m for m, _ in dead]
        self.source.ack(done)  # only now: outputs and dead letters are written
        self._account(outputs, new, len(dead), len(retry), len(messages))

    def _score(self, events: list[Event]) -> list[Result]:
        """Run the hook and the scorer; if either fails outright (a store or server is down),
        every event fails transiently: retried, and dead-lettered after max_attempts."""
        if not events:
            return []
        try:
            if self.before_score is not None:
                self.before_score([e.fields for e in events])
            return self.scorer.score([e.inputs for e in events])
        except Exception as exc:  # any failure here is the batch's, not one event's
            log.warning("batch of %d failed, left for redelivery: %s", len(events), exc)
            error = PipelineError(f"{type(exc).__name__}: {exc}", invalid=False)
            return [error] * len(events)

    def _record(self, event: Event, result: dict[str, Array]) -> dict[str, Any]:
        keep = self.config.outputs or list(result)
        return {
            "id": event.id,
            "event_time": event.time,
            "scored_at": time.time(),
            "pipeline": self.scorer.name,
            "consumer": self.consumer,
            "outputs": {k: np.asarray(result[k])[0].tolist() for k in keep},
        }

    def _account(
        self,
        outputs: list[tuple[Event, dict[str, Any]]],
        new: list[bool],
        dead: int,
        retried: int,
        handled: int,
    ) -> None:
        fresh = [(e, r) for (e, r), is_new in zip(outputs, new, strict=True) if is_new]
        self.counts.scored += len(fresh)
        self.counts.duplicates += len(outputs) - len(fresh)
        self.counts.dead += dead
        self.counts.retried += retried
        if self.predlog is not None and fresh:  # one entry (a list of records) per batch
            self.predlog.log([{**r, "features": _jsonable(e.inputs)} for e, r in fresh])
        if self.metrics is not None:
            self.metrics.batch(handled)
            self.metrics.events("scored", len(fresh))
            self.metrics.events("duplicate", len(outputs) - len(fresh))
            self.metrics.events("dead_letter", dead)
            self.metrics.events("retry", retried)
            now = time.time()
            for event, _ in fresh:
                if event.time is not None:
                    self.metrics.latency(now - event.time)

    def run(self) -> Counts:
        """Score until ``stop`` is set; the batch in hand is finished and acknowledged first.

        A bus error (a timeout, a restarted server) fails only the step it hit: nothing of that
        batch was acknowledged, so the bus delivers it again. The worker waits (0.5 s, doubling
        to 5 s) and carries on; once the bus has failed every step for ``bus_retry_s`` it gives
        up with a TritonPipeError naming the last error."""
        failing_since: float | None = None
        delay = 0.5
        while not self.stop.is_set():
            try:
                self.step()
            except Exception as exc:  # the bus client's own errors: many unrelated types
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= self.bus_retry_s:
                    raise TritonPipeError(
                        f"stream '{self.config.bus.stream}': the bus kept failing for "
                        f"{now - failing_since:.0f}s; last error {type(exc).__name__}: {exc}"
                    ) from exc
                log.warning("bus error, retrying in %.1fs: %s: %s", delay, type(exc).__name__, exc)
                self.counts.bus_errors += 1
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)
            else:
                failing_since, delay = None, 0.5
        return self.counts

    def close(self) -> None:
        for part in (self.scorer, self.source, self.sink):
            part.close()
        if self.predlog is not None:
            self.predlog.close()
        if self.metrics is not None:
            self.metrics.close()


def _jsonable(inputs: dict[str, Array]) -> dict[str, Any]:
    return {
        k: [x.decode(errors="replace") if isinstance(x, bytes) else x for x in v.ravel().tolist()]
        for k, v in inputs.items()
    }
