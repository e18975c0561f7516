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
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        # Arrow keeps null apart from NaN, and timestamps to the nanosecond.
        for row in pq.read_table(path).to_pylist():
            yield {str(k): _plain(v) for k, v in row.items()}
        return
    if path.suffix != ".csv":
        raise SpecError(f"{path}: events are read from .jsonl, .parquet or .csv")
    import pandas as pd

    frame = pd.read_csv(path, float_precision="round_trip")  # every digit, as written
    columns = [str(c) for c in frame.columns]
    for cells in frame.itertuples(index=False, name=None):
        row = {c: _plain(v) for c, v in zip(columns, cells, strict=True)}
        yield {c: None if isinstance(v, float) and v != v else v for c, v in row.items()}


def _plain(value: Any) -> Any:
    """A cell as the JSON / msgpack value it stands for, without loss: floats keep every digit,
    timestamps become epoch seconds with their fraction (UTC when naive), nulls stay null."""
    import datetime

    import numpy as np
    import pandas as pd

    if isinstance(value, pd.Timestamp | np.datetime64 | datetime.datetime):
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return None
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")
        return stamp.value / 1e9  # nanoseconds since the epoch
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in list(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


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
