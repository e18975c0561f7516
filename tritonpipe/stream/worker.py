"""The stream worker: read a micro-batch, decode, score, write outputs, then acknowledge.

At least once: an event is acknowledged only after its output (or dead letter) is written, so a
worker killed at any point leaves it pending for another worker; the sink's write-once by event
id turns the redelivery into a no-op. Failures split two ways: an event the input is at fault
for (undecodable, or rejected by the pipeline as invalid) is dead-lettered at once, since a retry
cannot help; any other failure is left unacknowledged and retried until ``max_attempts``
deliveries, then dead-lettered. Either way the stream moves on.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritonpipe.errors import PipelineError, SpecError, TritonPipeError
from tritonpipe.records import Contract, OutputRule
from tritonpipe.stream.bus import Message, Output, Sink, Source
from tritonpipe.stream.config import JobConfig
from tritonpipe.stream.metrics import Metrics
from tritonpipe.stream.scoring import Result, Scorer
from tritonpipe.tensors import Array, TensorSpec, from_numpy

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


def contract_for(
    config: JobConfig,
    declared: Sequence[TensorSpec] | None,
    outputs: Sequence[TensorSpec] | None = None,
    options: dict[str, Any] | None = None,
) -> Contract:
    """The records contract a job decodes events with: each mapped input reads its event field
    and takes the pipeline's dtype and shape unless the job config gives its own (without the
    pipeline's signature, FP32 and any length)."""
    known = {s.name: s for s in declared} if declared is not None else None
    specs = []
    for name, entry in config.inputs.items():
        spec = known.get(name) if known is not None else None
        if known is not None and spec is None:
            raise SpecError(
                f"stream job inputs.{name}: the pipeline has no input '{name}' "
                f"(it has {', '.join(known) or 'none'})"
            )
        dtype = entry.dtype or (spec.dtype if spec is not None else "FP32")
        default_shape = spec.shape if spec is not None else (-1,)
        shape = tuple(entry.shape) if entry.shape is not None else default_shape
        specs.append(TensorSpec(name=name, dtype=dtype, shape=shape))
    fields = {name: entry.field for name, entry in config.inputs.items()}
    if options is None:
        # Options unknown: types, lengths and ids are judged here, NaN and ranges by the runtime
        # that scores (embedded or on the server), in the same words.
        floats = [s.name for s in specs if s.dtype in ("FP16", "FP32", "FP64", "BF16")]
        return Contract.from_specs(specs, outputs or (), fields=fields, allow_nan=floats)
    mapped = set(config.inputs)
    return Contract.from_specs(
        specs,
        outputs or (),
        fields=fields,
        ranges={n: r for n, r in (options.get("ranges") or {}).items() if n in mapped},
        allow_nan=[n for n in options.get("allow_nan") or () if n in mapped],
        categories={n: c for n, c in (options.get("categories") or {}).items() if n in mapped},
        binary=options.get("binary") or (),
    )


def decode(config: JobConfig, message: Message, contract: Contract | None = None) -> Event:
    """Payload -> event fields -> one-row pipeline inputs, by the records contract; Poison
    holds the contract's reason (``input 'x': null``, ``id 'id': missing``)."""
    if message.refused is not None:
        raise Poison(message.refused)
    try:
        if config.format == "json":
            fields = json.loads(message.body)
        else:
            import msgpack

            fields = msgpack.unpackb(message.body, raw=False)
    except Exception as exc:  # every decoder error means the same: not this format
        raise Poison(f"payload is not {config.format}: {type(exc).__name__}: {exc}") from exc
    contract = contract if contract is not None else contract_for(config, None)
    converted = contract.from_records([fields], id_field=config.id_field)
    if converted.refusals:
        refusal = converted.refusals[0]
        reason = refusal.reason
        where = next((r.key for r in contract.inputs if r.name == refusal.input), None)
        if where is not None and where != refusal.input:
            reason += f" (event field '{where}')"
        raise Poison(reason)
    assert converted.ids is not None  # given an id_field, from_records lists the ids
    stamp = fields.get(config.time_field) if config.time_field else None
    return Event(
        message=message,
        id=str(converted.ids[0]),
        time=float(stamp) if isinstance(stamp, int | float) else None,
        fields=fields,
        inputs=converted.inputs,
    )


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
        self.contract = contract_for(config, scorer.inputs, scorer.outputs, scorer.options)
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
                events.append(decode(self.config, message, self.contract))
            except Poison as exc:
                dead.append((message, f"decode: {exc}"))
        results = self._score(events)
        outputs: list[tuple[Event, dict[str, Any], bytes]] = []
        retry: list[Message] = []
        for event, result in zip(events, results, strict=True):
            if not isinstance(result, PipelineError):
                try:  # an output that cannot be written fails its event, not the bus
                    record = self._record(event, result)
                    outputs.append((event, record, encode_record(record)))
                except Poison as exc:
                    dead.append((event.message, f"encode: {exc}"))
            elif result.invalid or event.message.deliveries >= self.config.max_attempts:
                dead.append(
                    (event.message, f"pipeline (attempt {event.message.deliveries}): {result}")
                )
            else:
                retry.append(event.message)
        new = self.sink.write([Output(key=e.id, body=body) for e, _, body in outputs])
        for message, reason in dead:
            self.sink.dead_letter(message, reason)
        done = [e.message for e, _, _ in outputs] + [m for m, _ in dead]
        self.source.ack(done)  # only now: outputs and dead letters are written
        self._account([(e, r) for e, r, _ in outputs], new, len(dead), len(retry), len(messages))

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
        missing = [k for k in keep if k not in result]
        if missing:
            raise Poison(
                f"the pipeline returned no output '{missing[0]}' (it returned {', '.join(result)})"
            )
        rules = {r.name: r for r in self.contract.outputs}
        rows = {k: np.asarray(result[k]) for k in keep}
        outputs = Contract(
            [], [rules.get(k) or OutputRule(spec=_spec_of(k, a)) for k, a in rows.items()]
        )
        values, failures = outputs.to_records(rows)
        if failures:
            raise Poison(failures[0].reason)
        binary = [r.name for r in outputs.outputs if r.kind == "binary"]
        for name in binary:  # JSON holds no bytes: base64 text, as in prediction logs
            values[0][name] = _base64(values[0][name])
        return {
            "id": event.id,
            "event_time": event.time,
            "scored_at": time.time(),
            "pipeline": self.scorer.name,
            "consumer": self.consumer,
            "outputs": values[0],
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


def _spec_of(name: str, array: Array) -> TensorSpec:
    """An output the pipeline's signature does not list: its spec from the array itself."""
    kind = "BYTES" if array.dtype.kind in "OSU" else from_numpy(array.dtype).triton
    return TensorSpec(name=name, dtype=kind, shape=tuple(array.shape[1:]))


def _base64(value: Any) -> Any:
    if isinstance(value, list):
        return [_base64(v) for v in value]
    return base64.b64encode(value).decode()


def encode_record(record: dict[str, Any]) -> bytes:
    """The output record as JSON; Poison (this event's failure) when it cannot be encoded."""
    try:
        return json.dumps(record).encode()
    except (TypeError, ValueError) as exc:
        raise Poison(f"the output record cannot be written as JSON: {exc}") from exc


def _jsonable(inputs: dict[str, Array]) -> dict[str, Any]:
    return {
        k: [x.decode(errors="replace") if isinstance(x, bytes) else x for x in v.ravel().tolist()]
        for k, v in inputs.items()
    }
