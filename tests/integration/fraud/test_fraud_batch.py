"""Batch jobs on the fraud pipeline: entity rows joined point-in-time from Feast's offline store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.integration.fraud.conftest import fraud_spec
from tritonpipe.batch import parse_config, run_job
from tritonpipe.ensembles import build_repository
from tritonpipe.errors import BatchError
from tritonpipe.server.redis_server import RedisServer


@pytest.fixture(scope="module")
def unfused_repository(fraud_world: Path, redis_log: RedisServer) -> Path:
    """The fraud spec built unfused (each step its own model), so the batch runners are checked
    against an ensemble; the fused build is what `make fraud` serves."""
    spec = fraud_world / "pipeline_batch.yaml"
    spec.write_text(
        yaml.safe_dump(fraud_spec(fraud_world, fraud_world / "logs_batch", redis_log.url))
    )
    build_repository(spec, fraud_world / "repository_unfused", fuse="none")
    return fraud_world / "repository_unfused"


def _day(world: Path) -> pd.DataFrame:
    txns = pd.read_parquet(world / "data" / "transactions.parquet")
    day = txns[txns["timestamp"] >= txns["timestamp"].max().floor("D")].head(300)
    return pd.DataFrame(
        {
            "txn_id": day["txn_id"].to_numpy(),
            "account_id": day["account_id"].to_numpy(),
            "amount": day["amount"].astype(np.float32).to_numpy(),
            "merchant_lat": day["merchant_lat"].astype(np.float32).to_numpy(),
            "merchant_lon": day["merchant_lon"].astype(np.float32).to_numpy(),
            "timestamp": day["timestamp"].map(pd.Timestamp.timestamp).to_numpy(),
            "event_timestamp": day["timestamp"].to_numpy(),
        }
    )


def test_feast_source_scores_like_the_parquet_source(
    fraud_world: Path, unfused_repository: Path, tmp_path: Path
) -> None:
    from feast import FeatureStore

    _day(fraud_world).to_parquet(tmp_path / "entities.parquet", index=False)
    store = FeatureStore(repo_path=str(fraud_world / "feature_repo"))
    feature = store.get_feature_service("fraud_v1").feature_view_projections[0].features[0].name

    def spec(source: dict[str, object], out: str, key: list[str]) -> dict[str, object]:
        return {
            "pipeline": str(unfused_repository),
            "model": "fraud",
            "source": {"path": str(tmp_path / "entities.parquet"), "rows_per_unit": 100, **source},
            "output": {"type": "parquet", "path": str(tmp_path / out)},
            "key": key,
        }

    feast = {
        "type": "feast",
        "repo": str(fraud_world / "feature_repo"),
        "feature_service": "fraud_v1",
    }
    a = run_job(parse_config(spec(feast, "feast", ["txn_id", feature])), progress=False)
    b = run_job(parse_config(spec({"type": "parquet"}, "plain", ["txn_id"])), progress=False)
    assert a.rows == b.rows == 300 and a.units == 3
    got = pd.read_parquet(tmp_path / "feast").sort_values("txn_id").reset_index(drop=True)
    plain = pd.read_parquet(tmp_path / "plain").sort_values("txn_id").reset_index(drop=True)
    np.testing.assert_array_equal(got["probability"], plain["probability"])
    entities = pd.read_parquet(tmp_path / "entities.parquet")
    direct = store.get_historical_features(
        entity_df=entities, features=store.get_feature_service("fraud_v1")
    ).to_df()
    want = direct.set_index("txn_id")[feature].sort_index()
    np.testing.assert_allclose(got.set_index("txn_id")[feature], want, equal_nan=True)


def test_feast_source_errors_name_repo_and_service(
    fraud_world: Path, unfused_repository: Path, tmp_path: Path
) -> None:
    _day(fraud_world).drop(columns=["event_timestamp"]).to_parquet(tmp_path / "e.parquet")
    config = {
        "pipeline": str(unfused_repository),
        "model": "fraud",
        "source": {
            "type": "feast",
            "path": str(tmp_path / "e.parquet"),
            "repo": str(fraud_world / "feature_repo"),
            "feature_service": "fraud_v1",
        },
        "output": {"type": "parquet", "path": str(tmp_path / "o")},
    }
    with pytest.raises(
        BatchError, match="e.parquet: feast entity rows need an event_timestamp column"
    ):
        run_job(parse_config(config), progress=False)
