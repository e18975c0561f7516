"""Replay recorded events into a job's input bus at a chosen rate (events per second)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tritonpipe.errors import SpecError
from tritonpipe.stream.bus import Publisher
from tritonpipe.stream.config import JobConfig, KafkaBus, NatsBus


def publisher(config: JobConfig) -> Publisher:
    bus = config.bus
    if isinstance(bus, KafkaBus):
        from tritonpipe.stream.kafka_bus import KafkaPublisher

        return KafkaPublisher(bus)
    if isinstance(bus, NatsBus):
        from tritonpipe.stream.nats_bus import NatsPublisher

        return NatsPublisher(bus)
    from tritonpipe.stream.redis_bus import RedisPublisher

    return RedisPublisher(bus, config.payload_field)


def encoder(config: JobConfig) -> Callable[[dict[str, Any]], bytes]:
    if config.format == "msgpack":
        import msgpack

        return lambda event: bytes(msgpack.packb(event, use_bin_type=True))
    return lambda event: json.dumps(event, default=str).encode()


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Events from JSON lines, Parquet or CSV, one dict per row."""
    if not path.is_file():
        raise SpecError(f"{path}: no such events file")
    if path.suffix in (".jsonl", ".json"):
        with path.open() as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise SpecError(f"{path}:{n}: not JSON: {exc}") from exc
        return
    import pandas as pd

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise SpecError(f"{path}: events are read from .jsonl, .parquet or .csv")
    yield from json.loads(frame.to_json(orient="records", date_format="epoch", date_unit="s"))


def replay(
    config: JobConfig,
    events: Iterable[dict[str, Any]],
    *,
    rate: float | None = None,
    stamp: bool = True,
    chunk: int = 50,
) -> int:
    """Publish ``events`` at ``rate`` per second (as fast as possible when None). With
    ``stamp`` the job's time field is set to the moment each event is published, so the
    workers' end-to-end latency counts from there. Returns how many were published."""
    out, encode, start, sent = publisher(config), encoder(config), time.monotonic(), 0
    field = config.time_field if stamp else None
    batch: list[dict[str, Any]] = []
    try:
        for event in events:
            batch.append(event)
            if len(batch) >= chunk:
                sent += _send(out, encode, field, batch, rate, start, sent)
                batch = []
        if batch:
            sent += _send(out, encode, field, batch, rate, start, sent)
    finally:
        out.close()
    return sent


def _send(
    out: Publisher,
    encode: Callable[[dict[str, Any]], bytes],
    field: str | None,
    batch: list[dict[str, Any]],
    rate: float | None,
    start: float,
    sent: int,
) -> int:
    if rate:  # paced: this chunk goes out when the schedule reaches it
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    now = time.time()
    out.publish([encode({**e, field: now} if field else e) for e in batch])
    return len(batch)
