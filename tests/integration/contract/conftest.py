"""One set of pipelines for every mode, built and served once per session: a few signatures
generated from the dtype list (scalar and vector inputs of FP32, FP64, INT32, INT64, BOOL and
BYTES, declared ranges, an input that takes NaN, text and binary outputs), each an echo stage;
the tabular embedding model exported to ONNX and TorchScript; one tritonserver serving them
all, one redis-server, one nats-server, one Kafka-protocol broker (Tansu) and one PostgreSQL
cluster."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.batch.postgres import PostgresServer
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.kafka_server import KafkaServer
from tritonpipe.server.nats_server import NatsServer
from tritonpipe.server.redis_server import RedisServer

HERE = Path(__file__).parent
DTYPES = ["FP32", "FP64", "INT32", "INT64", "BOOL", "BYTES"]
CATEGORIES = ("motor", "pump", "fän")

# Every output echoes its input (o_<name>); a signature with a BYTES input may add a binary
# output, its bytes reversed (not UTF-8 text once reversed, for non-ASCII input).
ECHO = """
import numpy as np


def echo(**inputs):
    out = {f"o_{name}": value for name, value in inputs.items()}
    for name, value in inputs.items():
        if value.dtype == object:
            out["raw"] = np.array([[bytes(v)[::-1] for v in row[:1]] for row in value], object)
            break
    return out
"""


@dataclass
class Signature:
    """One generated pipeline: its stage's tensors as the spec declares them."""

    name: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def binary(self) -> bool:
        return any(o.get("binary") for o in self.outputs)


def generate(count: int = 3, seed: int = 18) -> list[Signature]:
    """``count`` signatures that between them use every dtype, scalar and vector shapes, a
    declared range on each integer input, NaN allowed on one float input, a string input with
    declared categories (the second) and a binary output (the last)."""
    rng = random.Random(seed)
    order = DTYPES * ((2 * count) // len(DTYPES) + 1)
    signatures = []
    for n in range(count):
        inputs = []
        for k, dtype in enumerate(order[2 * n : 2 * n + 2] + [rng.choice(DTYPES)]):
            shape = [1] if (n + k) % 2 == 0 else [rng.choice([2, 3])]
            tensor: dict[str, Any] = {
                "name": f"i{k}_{dtype.lower()}",
                "dtype": dtype,
                "shape": shape,
            }
            if dtype in ("INT32", "INT64"):
                low = rng.choice([0, -5])
                tensor["range"] = [low, low + rng.choice([9, 49])]
            if dtype in ("FP32", "FP64") and k == 2:
                tensor["allow_nan"] = True
            inputs.append(tensor)
        if n == 1:  # a string category: an unknown one is refused
            inputs.append(
                {"name": "kind", "dtype": "BYTES", "shape": [1], "categories": list(CATEGORIES)}
            )
        outputs = [
            {"name": f"o_{t['name']}", "dtype": t["dtype"], "shape": t["shape"]} for t in inputs
        ]
        if n == count - 1 and any(t["dtype"] == "BYTES" for t in inputs):
            outputs.append({"name": "raw", "dtype": "BYTES", "shape": [1], "binary": True})
        signatures.append(Signature(f"sig{n}", inputs, outputs))
    return signatures


SIGNATURES = generate()


@pytest.fixture(scope="session")
def contract_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tabular model exported to ONNX and TorchScript (manifest value_ranges kind: [0, 50))."""
    from tritonpipe.export import export, parse_export_input

    out = tmp_path_factory.mktemp("tabular_contract") / "export"
    inputs = [parse_export_input("kind:INT64:1:0..50"), parse_export_input("num:FP32:2")]
    export(f"{HERE / 'models.py'}:build", inputs, out, output_names=["score"], max_batch_size=16)
    return out


@pytest.fixture(scope="session")
def contract_spec(contract_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contract")
    (root / "echo.py").write_text(ECHO)
    stages = {
        s.name: {
            "function": "echo.py:echo",
            "inputs": s.inputs,
            "outputs": s.outputs,
            "max_batch_size": 16,
        }  # fmt: skip
        for s in SIGNATURES
    }
    models = {
        f"tab_{fmt}": {"export": str(contract_export), "format": fmt, "max_batch_size": 16}
        for fmt in ("onnx", "torchscript")
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump({"stages": stages, "models": models}))
    return root / "pipeline.yaml"


@pytest.fixture(scope="session")
def contract_server(
    contract_spec: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    from tritonpipe.ensembles import build_repository

    repo = contract_spec.parent / "repo"
    build_repository(contract_spec, repo)
    log = tmp_path_factory.mktemp("contract_logs") / "tritonserver.log"
    with TritonServer(ServerOptions(repository=repo, exit_timeout_s=5), log_path=log) as server:
        yield server


@pytest.fixture(scope="session")
def contract_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("contract_redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def contract_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("contract_nats")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def contract_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    server = KafkaServer(tmp_path_factory.mktemp("contract_kafka")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def contract_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()
