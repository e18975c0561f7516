"""Batch jobs read from the fraud feature store: every entity's latest values as of a time, and a
day of transactions joined point-in-time and scored through the lookup's own transform."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tritonpipe.batch import parse_config, run_job
from tritonpipe.errors import BatchError, SpecError

FRAUD = ROOT / "examples" / "fraud"
STORED = [
    "txn_count_1h",
    "txn_count_1d",
    "txn_count_7d",
    "amount_mean_1d",
    "amount_mean_7d",
    "amount_std_7d",
    "amount_max_7d",
    "home_lat",
    "home_lon",
    "last_txn_ts",
]
# A stage that passes two stored features through, so the job's output shows what it read.
ECHO = """
def echo(txn_count_7d, last_txn_ts):
    return {"count": txn_count_7d, "last": last_txn_ts}
"""


@pytest.fixture(scope="module")
def echo_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("echo")
    (root / "echo.py").write_text(ECHO)
    spec = {
        "stages": {
            "echo": {
                "function": "echo.py:echo",
                "inputs": [
                    {"name": "txn_count_7d", "dtype": "FP32", "shape": [1]},
                    {"name": "last_txn_ts", "dtype": "FP64", "shape": [1]},
                ],
                "outputs": [
                    {"name": "count", "dtype": "FP32", "shape": [1]},
                    {"name": "last", "dtype": "FP64", "shape": [1]},
                ],
                "max_batch_size": 256,
            }
        }
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return root / "pipeline.yaml"


def _history_end(world: Path) -> pd.Timestamp:
    txns = pd.read_parquet(world / "data" / "transactions.parquet")
    return txns["timestamp"].max().floor("D")


def _latest_job(world: Path, spec: Path, out: Path, as_of: object, **source: object) -> dict:
    return {
        "pipeline": str(spec),
        "model": "echo",
        "source": {
            "type": "feast",
            "repo": str(world / "feature_repo"),
            "feature_service": "fraud_v1",
            "as_of": as_of,
            "rows_per_unit": 128,
            **source,
        },
        "output": {"type": "parquet", "path": str(out)},
        "key": ["account_id", *STORED],
    }


def test_latest_values_equal_feasts_online_store_and_historical_join(
    fraud_world: Path, echo_spec: Path, tmp_path: Path
) -> None:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(fraud_world / "feature_repo"))
    service = store.get_feature_service("fraud_v1")
    end = _history_end(fraud_world)
    # As of the materialization's end: what the online store holds, entity by entity.
    summary = run_job(parse_config(_latest_job(fraud_world, echo_spec, tmp_path / "a", end)))
    got = pd.read_parquet(tmp_path / "a").sort_values("account_id").reset_index(drop=True)
    assert summary.rows == len(got) == got["account_id"].nunique() > 200
    np.testing.assert_allclose(got["count"], got["txn_count_7d"])
    some = got.iloc[[0, 7, 50, len(got) - 1]]
    online = store.get_online_features(
        features=service, entity_rows=[{"account_id": int(a)} for a in some["account_id"]]
    ).to_df()
    for name in ("txn_count_7d", "amount_mean_7d", "home_lat", "last_txn_ts"):
        np.testing.assert_allclose(some[name], online[name], rtol=1e-6)
    # As of a time mid-history: Feast's own point-in-time join for the same entities and time.
    mid = end - pd.Timedelta(days=2, hours=5)
    run_job(parse_config(_latest_job(fraud_world, echo_spec, tmp_path / "b", mid.isoformat())))
    past = pd.read_parquet(tmp_path / "b").set_index("account_id").sort_index()
    entities = pd.DataFrame({"account_id": past.index[:40], "event_timestamp": mid})
    direct = store.get_historical_features(entity_df=entities, features=service).to_df()
    direct = direct.set_index("account_id").sort_index()
    for name in STORED:
        np.testing.assert_allclose(past.loc[direct.index, name], direct[name], rtol=1e-6)
    assert (past["last_txn_ts"] <= mid.timestamp()).all()  # nothing from after as_of
    assert not past.index.equals(got["account_id"]) or len(past) <= len(got)


def test_latest_values_errors_name_the_service_and_field(
    fraud_world: Path, echo_spec: Path, tmp_path: Path
) -> None:
    end = _history_end(fraud_world)
    bad = _latest_job(fraud_world, echo_spec, tmp_path / "o", end)
    bad["source"]["feature_service"] = "fraud_v9"
    with pytest.raises(
        BatchError, match=r"source.feature_service: no feature service 'fraud_v9'.*fraud_v1"
    ):
        run_job(parse_config(bad), progress=False)
    both = _latest_job(fraud_world, echo_spec, tmp_path / "o", end, path="e.parquet")
    with pytest.raises(SpecError, match="source: .*path .*or as_of"):
        parse_config(both)


def _day(world: Path, rows: int) -> pd.DataFrame:
    txns = pd.read_parquet(world / "data" / "transactions.parquet")
    day = txns[txns["timestamp"] >= txns["timestamp"].max().floor("D")].head(rows)
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


def test_a_day_of_transactions_scored_from_the_offline_store(
    fraud_world: Path, tmp_path: Path
) -> None:
    """The batch spec (scorer + decision) fed by the lookup's transform on point-in-time
    features: equal to Feast's join + the transform + the pipeline, called by hand."""
    from feast import FeatureStore

    from tritonpipe.pipeline import Pipeline

    spec = yaml.safe_load((FRAUD / "batch.yaml").read_text())
    spec["registry_uri"] = "sqlite:///mlflow.db"
    (fraud_world / "batch.yaml").write_text(yaml.safe_dump(spec))
    day = _day(fraud_world, 400)
    day.to_parquet(tmp_path / "day.parquet", index=False)
    job = {
        "pipeline": str(fraud_world / "batch.yaml"),
        "model": "fraud_offline",
        "source": {
            "type": "feast",
            "path": str(tmp_path / "day.parquet"),
            "repo": str(fraud_world / "feature_repo"),
            "feature_service": "fraud_v1",
            "rows_per_unit": 150,
        },
        "transform": f"{fraud_world / 'fraud_features.py'}:serving_inputs",
        "output": {"type": "parquet", "path": str(tmp_path / "first")},
        "key": ["txn_id", "account_id"],
        "bad_rows": {"policy": "reject", "rejects": str(tmp_path / "rejects")},
    }
    # Accounts first seen on the day have no features as of their transactions: rejected,
    # named by feature, or (missing_features defaults) scored on zeros like the online lookup.
    summary = run_job(parse_config(job), progress=False)
    rejects = pd.read_parquet(tmp_path / "rejects")
    assert summary.rows + summary.rejected == 400 and summary.rejected == len(rejects) > 0
    assert rejects["reason"].str.contains("no value as of .* in feature service 'fraud_v1'").all()
    job.update(missing_features="defaults", key=["txn_id", "account_id", "entity_found"])
    job["output"] = {"type": "parquet", "path": str(tmp_path / "out")}
    summary = run_job(parse_config(job), progress=False)
    assert (summary.rows, summary.rejected, summary.units) == (400, 0, 3)
    got = pd.read_parquet(tmp_path / "out").set_index("txn_id").sort_index()
    store = FeatureStore(repo_path=str(fraud_world / "feature_repo"))
    joined = store.get_historical_features(
        entity_df=day, features=store.get_feature_service("fraud_v1")
    ).to_df()
    joined = joined.set_index("txn_id").sort_index()
    sys.path.insert(0, str(fraud_world))
    from fraud_features import feature_vector

    stored = {n: joined[n].fillna(0).to_numpy(np.float64) for n in STORED}
    assert got["entity_found"].tolist() == joined[STORED[0]].notna().tolist()
    request = {n: joined[n].to_numpy() for n in ("amount", "merchant_lat", "merchant_lon")}
    request["timestamp"] = joined["timestamp"].to_numpy()
    pipe = Pipeline.load(fraud_world / "batch.yaml", "fraud_offline")
    want = pipe(
        {
            "features": feature_vector(stored, request),
            "account_id": joined["account_id"].to_numpy().reshape(-1, 1),
        }
    )
    np.testing.assert_allclose(got["probability"], want["probability"][:, 0], rtol=1e-6)
    assert got["is_fraud"].tolist() == want["is_fraud"][:, 0].tolist()


def test_cli_as_of_scores_every_entity(fraud_world: Path, echo_spec: Path, tmp_path: Path) -> None:
    """`--as-of` turns an entity-rows job into a latest-values one; a bad time names the field."""
    from typer.testing import CliRunner

    from tritonpipe.cli.main import app

    raw = _latest_job(fraud_world, echo_spec, tmp_path / "cli", None, path="unused.parquet")
    raw["source"].pop("as_of")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(raw))
    end = _history_end(fraud_world).isoformat()
    args = ["batch", str(tmp_path / "job.yaml"), "--no-progress", "--as-of", end]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(tmp_path / "cli")
    assert "rows scored" in result.output and scored["account_id"].is_unique
    assert len(scored) > 200
    bad = CliRunner().invoke(app, [*args[:-1], "yesterday"])
    assert bad.exit_code != 0 and "source.as_of" in bad.output
