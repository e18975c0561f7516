"""Assemble a worker from a job config and run it until SIGTERM / SIGINT."""

from __future__ import annotations

import functools
import os
import signal
import socket
from typing import Any

from tritonpipe.errors import SpecError
from tritonpipe.stream.bus import Sink, Source
from tritonpipe.stream.config import JobConfig, KafkaBus, NatsBus
from tritonpipe.stream.metrics import Metrics
from tritonpipe.stream.scoring import make_scorer
from tritonpipe.stream.worker import Counts, Hook, Worker


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def open_bus(config: JobConfig, consumer: str) -> tuple[Source, Sink]:
    """The job's source and sink; one adapter pair per bus type."""
    bus = config.bus
    if isinstance(bus, KafkaBus):
        from tritonpipe.stream.kafka_bus import open_kafka

        return open_kafka(bus)
    if isinstance(bus, NatsBus):
        from tritonpipe.stream.nats_bus import NatsSink, NatsSource

        return NatsSource(bus), NatsSink(bus)
    from tritonpipe.stream.redis_bus import RedisSink, RedisSource

    return RedisSource(bus, consumer, config.payload_field), RedisSink(bus)


def status(config: JobConfig) -> dict[str, Any]:
    bus = config.bus
    if isinstance(bus, KafkaBus):
        from tritonpipe.stream import kafka_topics

        return kafka_topics.status(bus)
    if isinstance(bus, NatsBus):
        from tritonpipe.stream import nats_bus

        return nats_bus.status(bus)
    from tritonpipe.stream import redis_bus

    return redis_bus.status(bus)


def _hook(config: JobConfig) -> Hook | None:
    """The job's before-score hook, called once with no events first, so that it loads what it
    needs (history, stores, connections) before the first batch rather than during it."""
    if config.before_score is None:
        return None
    from tritonpipe.loading import load_function

    hook = functools.partial(load_function(config.before_score, config.base), **config.parameters)
    try:
        hook([])
    except Exception as exc:  # the user's code: whatever it raises, say which hook and why
        raise SpecError(
            f"before_score '{config.before_score}' failed at start-up (called with no events): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return hook


def build_worker(
    config: JobConfig,
    *,
    consumer: str | None = None,
    url: str | None = None,
    metrics_port: int | None = None,
    threads: int | None = 1,
) -> Worker:
    """A worker with its bus, scorer (embedded pipeline, or Triton at ``url``), prediction log,
    metrics endpoint (``metrics_port``; 0 picks a free port) and before-score hook."""
    consumer = consumer or default_consumer()
    pipeline = str(config.pipeline_path())
    options = {"threads": threads} if url is None else {}
    scorer = make_scorer(pipeline, config.name, url, **options)
    source, sink = open_bus(config, consumer)
    predlog = None
    if config.log is not None:
        from tritonpipe.predlog import PredictionLogger, make_sink

        predlog = PredictionLogger(make_sink(config.log, config.base), to_records=list)
    stream = config.bus.stream
    metrics = Metrics(stream, metrics_port) if metrics_port is not None else None
    return Worker(
        config,
        source,
        sink,
        scorer,
        consumer=consumer,
        metrics=metrics,
        predlog=predlog,
        before_score=_hook(config),
    )


def run_until_signalled(worker: Worker) -> Counts:
    """Run; SIGTERM or SIGINT lets the batch in hand finish and be acknowledged, then returns."""

    def stop(signum: int, frame: Any) -> None:
        worker.stop.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        worker.close()
