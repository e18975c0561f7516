"""A stage's parameters as the spec sets them (a list of cutoffs and a list of labels, away from
their defaults) take effect in a stream worker on a real Redis, as they do in-process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import redis
import yaml

from tritonpipe.pipeline import Pipeline
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config
from tritonpipe.stream.replay import replay

STAGE = '''
import numpy as np


def grade(reading, cutoffs=(0.0,), labels=("low", "high")):
    """Each reading's label: the first cutoff above it picks it (bisect), the last one past all."""
    at = np.searchsorted(np.asarray(cutoffs, dtype=np.float64), reading[:, 0], side="right")
    return {"grade": np.array([[labels[i].encode()] for i in at], dtype=object)}
'''
PARAMETERS = {"cutoffs": [10.0, 25.0], "labels": ["cold", "mild", "hot"]}
READINGS = {"r0": -4.0, "r1": 3.5, "r2": 10.0, "r3": 18.0, "r4": 25.5, "r5": 40.0}
EXPECTED = {"r0": "cold", "r1": "cold", "r2": "mild", "r3": "mild", "r4": "hot", "r5": "hot"}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "stages.py").write_text(STAGE)
    stage = {
        "function": "stages.py:grade",
        "parameters": PARAMETERS,
        "inputs": [{"name": "reading", "dtype": "FP64", "shape": [1]}],
        "outputs": [{"name": "grade", "dtype": "BYTES", "shape": [1]}],
        "max_batch_size": 16,
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"stages": {"grade": stage}}))
    return tmp_path / "pipeline.yaml"


def test_stage_parameters_take_effect_in_a_stream_worker(
    redis_bus: RedisServer, spec: Path, tmp_path: Path
) -> None:
    pipe = Pipeline.load(spec, "grade", threads=1)
    in_process = pipe({"reading": np.array([[v] for v in READINGS.values()])})["grade"]
    assert [g[0].decode() for g in in_process] == list(EXPECTED.values())

    tag = f"params-{time.monotonic_ns()}"
    job = {
        "pipeline": str(spec),
        "name": "grade",
        "bus": {
            "type": "redis",
            "url": redis_bus.url,
            "stream": f"{tag}:in",
            "output": f"{tag}:out",
            "dead_letter": f"{tag}:dead",
        },
        "inputs": {"reading": {"field": "celsius"}},
        "batch": {"max_events": 4, "max_wait_ms": 10},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    config = load_config(tmp_path / "job.yaml")
    sent = [{"id": k, "celsius": v} for k, v in READINGS.items()]
    assert replay(config, sent) == len(sent)
    worker = build_worker(config, consumer="w")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and worker.counts.scored + worker.counts.dead < 6:
            worker.step()
    finally:
        worker.close()
    r = redis.Redis.from_url(redis_bus.url)
    assert not r.exists(f"{tag}:dead"), r.xrange(f"{tag}:dead")
    records = [json.loads(f[b"body"]) for _, f in r.xrange(f"{tag}:out")]
    assert {o["id"]: o["outputs"]["grade"] for o in records} == EXPECTED
