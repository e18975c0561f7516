"""The fraud example in a stream worker: with fresh features on (pushed through the Feast push
source to a SQLite or a Redis online store), a burst of transactions changes the features of the
very next prediction and of an online lookup; without them the stored state stays put."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
import yaml

from tests.integration.fraud.conftest import FRAUD, _lookup
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config
from tritonpipe.stream.replay import replay

sys.path.insert(0, str(FRAUD))
from fraud_features import FEATURES  # noqa: E402

COUNT_1H = FEATURES.index("log_count_1h")


def _job(world: Path, tag: str, bus: RedisServer, fresh: bool, online: str) -> Path:
    """A copy of the Feast repository (its online store is written; a Redis one in a db of its
    own), a spec whose ensemble returns the looked-up feature vector, and a job config."""
    repo = world / f"feature_repo_{tag}"
    shutil.copytree(world / ("feature_repo_redis" if online == "redis" else "feature_repo"), repo)
    if online == "redis":
        config = yaml.safe_load((repo / "feature_store.yaml").read_text())
        config["online_store"]["connection_string"] = f"127.0.0.1:{bus.port},db=3"
        (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    spec = {"features": {"lookup": _lookup(repo.name, "defaults")},
            "ensembles": {"features": {"steps": ["lookup"], "outputs": ["features", "entity_found"],
                                       "fuse": "none"}}}  # fmt: skip
    (world / f"stream_{tag}.yaml").write_text(yaml.safe_dump(spec))
    job: dict[str, Any] = {
        "pipeline": f"stream_{tag}.yaml",
        "name": "features",
        "bus": {"type": "redis", "url": bus.url, "stream": f"{tag}:in",
                "output": f"{tag}:out", "dead_letter": f"{tag}:dead"},
        "id_field": "txn_id",
        "time_field": "sent_at",
        "inputs": {"account_id": {"field": "account_id", "dtype": "INT64"},
                   "amount": {"field": "amount"}, "merchant_lat": {"field": "merchant_lat"},
                   "merchant_lon": {"field": "merchant_lon"},
                   "timestamp": {"field": "timestamp", "dtype": "FP64"}},
        "batch": {"max_events": 1, "max_wait_ms": 0},
    }  # fmt: skip
    if fresh:
        job["before_score"] = str(FRAUD / "fresh_features.py") + ":push"
        job["parameters"] = {"repo": str(repo), "windows": bus.url.replace("/0", "/1"),
                             "data": str(world / "data")}  # fmt: skip
    path = world / f"job_{tag}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _burst(world: Path) -> list[dict[str, Any]]:
    """Six transactions of one known account, 20 s apart, an hour into the held-out day."""
    txns = pd.read_parquet(world / "data" / "transactions.parquet")
    start = txns["timestamp"].max().floor("D")
    account = int(txns[txns["timestamp"] < start]["account_id"].value_counts().index[0])
    t0 = start.timestamp() + 3600.0
    return [
        {"txn_id": 10_000_000 + i, "account_id": account, "amount": 42.0 + i,
         "merchant_lat": 48.85, "merchant_lon": 2.35, "timestamp": t0 + 20.0 * i}
        for i in range(6)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fresh", "online"),
    [(True, "sqlite"), (True, "redis"), (False, "sqlite")],
    ids=["fresh-sqlite", "fresh-redis", "stored"],
)
def test_burst_changes_the_next_prediction_features(
    fraud_world: Path, redis_store: RedisServer, fresh: bool, online: str
) -> None:
    tag = f"fresh_{online}" if fresh else "stored"
    config = load_config(_job(fraud_world, tag, redis_store, fresh, online))
    events = _burst(fraud_world)
    replay(config, events)
    worker = build_worker(config, consumer="w")
    try:
        while worker.step():
            pass
    finally:
        worker.close()
    r = redis.Redis.from_url(redis_store.url)
    records = {
        json.loads(f[b"body"])["id"]: json.loads(f[b"body"]) for _, f in r.xrange(f"{tag}:out")
    }
    assert len(records) == len(events)
    counts = [records[str(e["txn_id"])]["outputs"]["features"][COUNT_1H] for e in events]
    if fresh:  # each transaction sees the state right after the one before it
        seen = np.expm1(counts)  # the 1 h count: e1 sees e0 alone, ..., e5 sees e0..e4
        np.testing.assert_allclose(seen[1:], [1, 2, 3, 4, 5], atol=1e-3)
    else:
        assert len(set(counts)) == 1, counts
    # Online requests read the same store: the state the last push wrote (before e5: e0..e4).
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(fraud_world / f"feature_repo_{tag}"))
    online_row = store.get_online_features(
        features=["account_stats:txn_count_1h"],
        entity_rows=[{"account_id": events[0]["account_id"]}],
    ).to_dict()
    if fresh:
        assert online_row["txn_count_1h"] == [5.0]
    else:
        assert online_row["txn_count_1h"] != [5.0]
