"""The fraud pipeline against real stores: a small generated dataset, Feast repositories with the
SQLite and a Redis online store, a registered (untrained) scorer in a SQLite MLflow registry, and
one tritonserver serving every variant. Redis servers run on free loopback ports."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tritonpipe.ensembles import build_repository
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.redis_server import RedisServer

FRAUD = ROOT / "examples" / "fraud"
sys.path.insert(0, str(FRAUD))

import feature_pipeline  # noqa: E402
from generate import generate  # noqa: E402

REQUEST = [
    {"name": "amount", "dtype": "FP32", "shape": [1]},
    {"name": "merchant_lat", "dtype": "FP32", "shape": [1]},
    {"name": "merchant_lon", "dtype": "FP32", "shape": [1]},
    {"name": "timestamp", "dtype": "FP64", "shape": [1]},
]
KEY = [{"name": "account_id", "dtype": "INT64", "shape": [1]}]
FEATURES = [{"name": "features", "dtype": "FP32", "shape": [13]}]


@pytest.fixture(scope="session")
def redis_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis_store")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis_log")).start()
    yield server
    server.stop()


def _feature_repo(target: Path, data: Path, online: dict[str, Any] | None) -> None:
    target.mkdir()
    shutil.copyfile(FRAUD / "feature_repo" / "definitions.py", target / "definitions.py")
    config = yaml.safe_load((FRAUD / "feature_repo" / "feature_store.yaml").read_text())
    if online is not None:
        config["online_store"] = online
    (target / "feature_store.yaml").write_text(yaml.safe_dump(config))
    feature_pipeline.run(data, target)


@pytest.fixture(scope="session")
def fraud_world(tmp_path_factory: pytest.TempPathFactory, redis_store: RedisServer) -> Path:
    """Data, two Feast repositories (SQLite, Redis) and a registry version, in one folder."""
    root = tmp_path_factory.mktemp("fraud")
    txns, accounts = generate(accounts=300, days=9, seed=3)
    (root / "data").mkdir()
    txns.to_parquet(root / "data" / "transactions.parquet", index=False)
    accounts.to_parquet(root / "data" / "accounts.parquet", index=False)
    _feature_repo(root / "feature_repo", root / "data", None)
    redis_online = {"type": "redis", "connection_string": f"127.0.0.1:{redis_store.port}"}
    _feature_repo(root / "feature_repo_redis", root / "data", redis_online)
    from tritonpipe.export import export
    from tritonpipe.registry import register
    from tritonpipe.tensors import TensorSpec

    spec = TensorSpec(name="features", dtype="FP32", shape=(13,))
    export(
        f"{FRAUD / 'fraud_model.py'}:untrained",
        [(spec, (13,))],
        root / "export",
        formats=["onnx"],
        max_batch_size=256,
        output_names=["logit"],
    )
    register(
        root / "export",
        name="fraud",
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        tags={"feature_service": "fraud_v1", "threshold": "0.5"},
        alias="champion",
    )
    for name in ("fraud_features.py", "stages.py"):
        shutil.copyfile(FRAUD / name, root / name)
    return root


def _lookup(repo: str, policy: str, **extra: Any) -> dict[str, Any]:
    return {
        "repo": repo,
        "feature_service": "fraud_v1",
        "entity_keys": KEY,
        "request_data": REQUEST,
        "transform": "fraud_features.py:serving_inputs",
        "outputs": FEATURES,
        "missing": {"policy": policy},
        "max_batch_size": 256,
        "dynamic_batching": {"max_queue_delay_microseconds": 500},
        **extra,
    }


def _decide(with_flag: bool) -> dict[str, Any]:
    inputs = [{"name": "logit", "dtype": "FP32", "shape": [1]}, *KEY, *FEATURES]
    if with_flag:
        inputs.append({"name": "entity_found", "dtype": "BOOL", "shape": [1]})
    return {
        "function": "stages.py:decide",
        "parameters": {"threshold": "${models.scorer.tags.threshold}"},
        "inputs": inputs,
        "outputs": [
            {"name": "probability", "dtype": "FP32", "shape": [1]},
            {"name": "is_fraud", "dtype": "BOOL", "shape": [1]},
        ],
        "max_batch_size": 256,
        "dynamic_batching": {"max_queue_delay_microseconds": 500},
    }


def fraud_spec(world: Path, log_dir: Path, redis_log_url: str) -> dict[str, Any]:
    """Every variant: SQLite lookup + Parquet log (fraud), reject policy (fraud_strict), Redis
    online store (fraud_redis_store), Redis Stream log (fraud_redis_log)."""
    log = {"entity_keys": ["account_id"], "features": "features"}
    return {
        "registry_uri": "sqlite:///mlflow.db",
        "features": {
            "lookup": _lookup("feature_repo", "defaults"),
            "lookup_strict": _lookup("feature_repo", "reject"),
            "lookup_redis": _lookup("feature_repo_redis", "defaults"),
        },
        "models": {
            "scorer": {
                "registry": "models:/fraud@champion",
                "format": "onnx",
                "max_batch_size": 256,
                "dynamic_batching": {"max_queue_delay_microseconds": 500},
            }
        },
        "stages": {"decide": _decide(True), "decide_redis_log": _decide(True)},
        "ensembles": {
            "fraud": {
                "steps": ["lookup", "scorer", "decide"],
                "outputs": ["probability", "is_fraud", "entity_found"],
                "log": {"sink": {"type": "parquet", "path": str(log_dir)}, **log},
            },
            "fraud_strict": {"steps": ["lookup_strict", "scorer"]},
            "fraud_redis_store": {
                "steps": ["lookup_redis", "scorer"],
                "outputs": ["logit", "entity_found"],
            },
            "fraud_redis_log": {
                "steps": ["lookup", "scorer", "decide_redis_log"],
                "outputs": ["probability", "is_fraud", "entity_found"],
                "log": {
                    "sink": {"type": "redis", "url": redis_log_url, "stream": "fraud"},
                    **log,
                },
            },
        },
    }


@pytest.fixture(scope="session")
def fraud_repository(fraud_world: Path, redis_log: RedisServer) -> Path:
    spec = fraud_world / "pipeline.yaml"
    logs = fraud_world / "logs" / "fraud"
    spec.write_text(yaml.safe_dump(fraud_spec(fraud_world, logs, redis_log.url)))
    build_repository(spec, fraud_world / "repository")
    return fraud_world / "repository"


@pytest.fixture(scope="session")
def fraud_server(fraud_repository: Path) -> Iterator[TritonServer]:
    log = fraud_repository.parent / "tritonserver.log"
    options = ServerOptions(repository=fraud_repository, exit_timeout_s=20)
    with TritonServer(options, log_path=log) as running:
        yield running
