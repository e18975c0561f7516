"""Replay publishes what the events file holds, without loss (issue 18 item 7): every digit of a
float, timestamps with their fraction of a second, nulls apart from NaN (Parquet)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import load_config
from tritonpipe.stream.replay import read_events, replay

VALUES = [0.1234567890123456789, 1e-300, 70.00000000000001, 2.0**0.5]
STAMPS = ["2026-03-01 12:00:00.123456", "2026-03-01 12:00:01.999999", "2026-03-01 12:00:02.5",
          "2026-03-01 12:00:03.000001"]  # fmt: skip


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_replayed_events_keep_every_digit(
    suffix: str, redis_bus: RedisServer, tmp_path: Path
) -> None:
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(4)],
            "temperature": VALUES,
            "at": pd.to_datetime(STAMPS),
        }  # fmt: skip
    )
    path = tmp_path / f"events{suffix}"
    if suffix == ".parquet":
        table = pa.Table.from_pandas(frame, preserve_index=False)
        nulls = pa.array([None, 1.5, float("nan"), 2.5], pa.float64())
        pq.write_table(table.append_column("gap", nulls), path)
    else:
        frame.to_csv(path, index=False, float_format="%.17g")
    job = tmp_path / "job.yaml"
    tag = f"replay{suffix[1:]}"
    job.write_text(
        f"pipeline: p.yaml\nbus: {{type: redis, url: '{redis_bus.url}', stream: {tag}, "
        f"output: {tag}:out, dead_letter: {tag}:dead}}\ninputs: {{t: {{field: temperature}}}}\n"
    )
    assert replay(load_config(job), read_events(path), stamp=False) == 4
    r = redis.Redis.from_url(redis_bus.url)
    sent = [json.loads(f[b"data"]) for _, f in r.xrange(tag)]
    assert [e["temperature"] for e in sent] == VALUES  # bit-equal floats
    if suffix == ".parquet":
        expected = [(pd.Timestamp(s, tz="UTC").value / 1e9) for s in STAMPS]
        assert [e["at"] for e in sent] == expected  # epoch seconds with their fraction
        gaps = [e["gap"] for e in sent]
        assert gaps[0] is None and gaps[1] == 1.5 and math.isnan(gaps[2])
