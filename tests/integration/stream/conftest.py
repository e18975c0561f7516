"""Stream workers against a real redis-server and a real nats-server (JetStream), both on free
loopback ports, scoring with a tiny one-stage pipeline (x -> 2 * sum(x); negative x is invalid)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tritonpipe.server.kafka_server import KafkaServer
from tritonpipe.server.nats_server import NatsServer
from tritonpipe.server.redis_server import RedisServer

STAGE = '''
import time

import numpy as np


def score(x: np.ndarray, delay_ms: str = "0") -> dict[str, np.ndarray]:
    """x: FP32 [batch, 2] -> y: FP32 [batch, 1] = 2 * sum(x); a negative x is the caller's fault."""
    if (x < 0).any():
        raise ValueError("input 'x' is negative")
    time.sleep(float(delay_ms) / 1000)
    return {"y": (2 * x.sum(axis=1, keepdims=True)).astype(np.float32)}
'''


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    (root / "stages.py").write_text(STAGE)
    spec = {
        "stages": {
            "score": {
                "function": "stages.py:score",
                "parameters": {"delay_ms": "15"},
                "inputs": [{"name": "x", "dtype": "FP32", "shape": [2]}],
                "outputs": [{"name": "y", "dtype": "FP32", "shape": [1]}],
                "max_batch_size": 64,
            }
        }
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return root / "pipeline.yaml"


@pytest.fixture(scope="session")
def redis_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis_bus")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats_store")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """Tansu, a Kafka-protocol broker, storage in memory (topics are named after each test)."""
    server = KafkaServer(tmp_path_factory.mktemp("kafka")).start()
    yield server
    server.stop()


@pytest.fixture
def job(tmp_path: Path, tiny_pipeline: Path, request: pytest.FixtureRequest) -> Callable[..., Path]:
    """Write a job config for a bus (streams named after the test) and return its path."""
    tag = request.node.name.replace("[", "_").replace("]", "").replace("-", "_")

    def write(bus: dict[str, Any], **extra: Any) -> Path:
        config = {
            "pipeline": str(tiny_pipeline),
            "name": "score",
            "bus": bus,
            "inputs": {"x": {"field": "x"}},
            "batch": {"max_events": 8, "max_wait_ms": 10},
            **extra,
        }
        path = tmp_path / f"{tag}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    write.tag = tag  # type: ignore[attr-defined]
    return write


def events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"e{i}", "x": [float(i), 1.0], "ts": time.time()} for i in range(start, start + n)
    ]


def start_worker(config: Path, consumer: str) -> subprocess.Popen[bytes]:
    """``tritonpipe stream run`` in its own process (so it can be killed for real); what it
    prints goes to a file beside the config (a pipe nobody reads would stall it when full)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with worker_log(config, consumer).open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tritonpipe.cli",
                "stream",
                "run",
                str(config),
                "--consumer",
                consumer,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def worker_log(config: Path, consumer: str) -> Path:
    return config.parent / f"worker-{consumer}.log"


def stop_worker(process: subprocess.Popen[bytes], config: Path, consumer: str) -> str:
    """SIGTERM, then what the worker printed; fails (with that output) unless it exits 0."""
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    out = worker_log(config, consumer).read_text(errors="replace")
    assert code == 0, f"worker {consumer} exited {code}:\n{out}"
    return out


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def dumps(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()
