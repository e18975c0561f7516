"""Labels from a real Feast repository (local provider, file offline store), arriving days after
the predictions: joined by request id (a view of chargebacks stamped when they arrived) and by
entity and event time (a view of user outcomes, with the time each became known), point-in-time
as of a monitoring time. Quality per window equals sklearn's on the same rows, the rows chosen
here by a plain loop over the data, independently of the monitor's join."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tritonpipe.cli.main import app
from tritonpipe.errors import MonitorError
from tritonpipe.monitor import build_profile, join_labels, monitor, read_labels
from tritonpipe.monitor.logs import load
from tritonpipe.predlog import ParquetSink

DAY = 86_400.0
DAYS, PER_DAY, USERS = 3, 400, 60
START = pd.Timestamp("2026-03-01", tz="UTC")
AS_OF = START + pd.Timedelta(days=2, hours=12)

STORE_YAML = """project: labels
provider: local
registry: data/registry.db
online_store: {type: sqlite, path: data/online.db}
offline_store: {type: file}
entity_key_serialization_version: 2
"""


def _repo(root: Path, chargebacks: pd.DataFrame, outcomes: pd.DataFrame) -> Path:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Int64, UnixTimestamp

    repo = root / "feature_repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(STORE_YAML)
    chargebacks.to_parquet(repo / "data" / "chargebacks.parquet", index=False)
    outcomes.to_parquet(repo / "data" / "outcomes.parquet", index=False)
    request = Entity(name="request", join_keys=["request_id"], value_type=ValueType.STRING)
    user = Entity(name="user", join_keys=["user"], value_type=ValueType.INT64)
    by_request = FeatureView(
        name="chargebacks",
        entities=[request],
        ttl=timedelta(days=0),
        schema=[Field(name="is_fraud", dtype=Int64)],
        source=FileSource(
            path=str(repo / "data" / "chargebacks.parquet"), timestamp_field="arrived"
        ),  # fmt: skip
    )
    by_user = FeatureView(
        name="user_outcomes",
        entities=[user],
        ttl=timedelta(hours=20),
        schema=[Field(name="label", dtype=Int64), Field(name="label_time", dtype=UnixTimestamp)],
        source=FileSource(
            path=str(repo / "data" / "outcomes.parquet"), timestamp_field="event_timestamp"
        ),  # fmt: skip
    )
    FeatureStore(repo_path=str(repo)).apply([request, user, by_request, by_user])
    return repo


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("feast_labels")
    rng = np.random.default_rng(3)
    n = DAYS * PER_DAY
    seconds = np.sort(np.repeat(np.arange(DAYS) * DAY, PER_DAY) + rng.uniform(0, DAY, n))
    x = np.column_stack([rng.normal(0, 1, n), rng.gamma(2.0, 2.0, n)])
    score = 1 / (1 + np.exp(-(x[:, 0] + 0.3 * x[:, 1] - 1.5)))
    ids = np.array([f"req-{i:05d}" for i in range(n)])
    users = rng.integers(1, USERS + 1, n)
    sink = ParquetSink(root / "logs", roll_rows=500, roll_seconds=3600)
    base = START.timestamp()
    sink.write([{"request_id": r, "row": 0, "timestamp": base + t, "model": "risk",
                 "model_version": "2", "entity_user": int(u), "features": f,
                 "output_score": float(p)}
                for r, t, u, f, p in zip(ids, seconds, users, x.tolist(), score, strict=True)])  # fmt: skip
    sink.close()
    profile = build_profile(x[:PER_DAY], ["z", "spend"], score[:PER_DAY], threshold=0.5)
    profile.save(root / "profile.json")
    when = START + pd.to_timedelta(seconds, unit="s")
    # By request: each chargeback (0 or 1) arrives 0.5..3 days after its prediction.
    fraud = (rng.random(n) < score).astype(np.int64)
    arrived = when + pd.to_timedelta(rng.uniform(0.5, 3.0, n), unit="D")
    chargebacks = pd.DataFrame({"request_id": ids, "is_fraud": fraud, "arrived": arrived})
    # By user: outcome events at their own times, each known some hours later.
    m = 900
    event = START - pd.Timedelta(hours=6) + pd.to_timedelta(rng.uniform(0, DAYS, m), unit="D")
    outcomes = pd.DataFrame({
        "user": rng.integers(1, USERS + 1, m), "label": rng.integers(0, 2, m),
        "event_timestamp": event,
        "label_time": event + pd.to_timedelta(rng.uniform(1, 30, m), unit="h"),
    })  # fmt: skip
    repo = _repo(root, chargebacks, outcomes)
    return {"root": root, "repo": repo, "ids": ids, "when": when, "users": users,
            "score": score, "chargebacks": chargebacks, "outcomes": outcomes}  # fmt: skip


def _by_user_offline(world: dict[str, Any]) -> np.ndarray[Any, Any]:
    """Per prediction, the label of its user's latest event at or before it, known by AS_OF
    and within the view's ttl (20 h); NaN where none. A plain loop: the reference."""
    events = world["outcomes"]
    known = events[events["label_time"] <= AS_OF]
    out = np.full(len(world["ids"]), np.nan)
    for i, (user, t) in enumerate(zip(world["users"], world["when"], strict=True)):
        mine = known[(known["user"] == user) & (known["event_timestamp"] <= t)
                     & (known["event_timestamp"] >= t - pd.Timedelta(hours=20))]  # fmt: skip
        if len(mine):
            out[i] = mine.loc[mine["event_timestamp"].idxmax(), "label"]
    return out


def _assert_equal_offline(result: Any, world: dict[str, Any], truth: np.ndarray[Any, Any]) -> None:
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    assert len(result.windows) == DAYS
    for d, w in enumerate(result.windows):
        rows = np.zeros(len(truth), bool)
        rows[d * PER_DAY : (d + 1) * PER_DAY] = True
        rows &= ~np.isnan(truth)
        y, s = truth[rows].astype(int), world["score"][rows]
        if not rows.any():
            assert w.quality is None
            continue
        assert w.quality is not None and w.quality.rows == rows.sum()
        assert w.quality.roc_auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert w.quality.precision == pytest.approx(precision_score(y, s >= 0.5), abs=1e-12)
        assert w.quality.recall == pytest.approx(recall_score(y, s >= 0.5), abs=1e-12)


def test_labels_by_request_id_from_a_feast_view_as_known_then(world: dict[str, Any]) -> None:
    from tritonpipe.monitor.profile import Profile

    labels = read_labels(f"feast:{world['repo']}#chargebacks", as_of=AS_OF)
    assert set(labels.columns) >= {"request_id", "is_fraud", "event_time", "label_time"}
    frame = load(world["root"] / "logs")
    joined = join_labels(frame, labels, label="is_fraud", as_of=AS_OF)
    result = monitor(joined, Profile.load(world["root"] / "profile.json"), every="1d",
                     prediction="output_score")  # fmt: skip
    cb = world["chargebacks"]
    truth = np.where(cb["arrived"] <= AS_OF, cb["is_fraud"], np.nan)
    assert 0 < np.isnan(truth).sum() < len(truth)  # some labels are not known yet
    _assert_equal_offline(result, world, truth)


def test_labels_by_entity_and_event_time_through_the_cli(world: dict[str, Any]) -> None:
    truth = _by_user_offline(world)
    assert 0 < np.isnan(truth).sum() < len(truth)
    logs, profile = str(world["root"] / "logs"), str(world["root"] / "profile.json")
    frame = load(logs)
    labels = read_labels(f"feast:{world['repo']}#user_outcomes", as_of=AS_OF)
    joined = join_labels(frame, labels, entity="user", tolerance=labels.attrs["ttl"], as_of=AS_OF)
    from tritonpipe.monitor.profile import Profile

    result = monitor(joined, Profile.load(Path(profile)), every="1d", prediction="output_score")
    _assert_equal_offline(result, world, truth)
    # The CLI: the view's ttl is the tolerance; each day prints the metrics of the same rows.
    out = CliRunner().invoke(app, [
        "monitor", "run", logs, "--profile", profile, "--prediction", "output_score",
        "--labels", f"feast:{world['repo']}#user_outcomes", "--entity", "user",
        "--as-of", str(AS_OF)])  # fmt: skip
    assert out.exit_code == 0, out.output
    for w in result.windows:
        q = w.quality
        assert q is not None
        assert f"AUC {q.roc_auc:.3f} precision {q.precision:.3f}" in out.output
        assert f"({q.rows:,} labelled)" in out.output


def test_a_missing_view_or_repository_is_named(world: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="no feature view 'nope'.*chargebacks"):
        read_labels(f"feast:{world['repo']}#nope")
    with pytest.raises(MonitorError, match="not a Feast repository"):
        read_labels(f"feast:{tmp_path}#chargebacks")
    out = CliRunner().invoke(app, [
        "monitor", "run", str(world["root"] / "logs"), "--profile",
        str(world["root"] / "profile.json"), "--prediction", "output_score",
        "--labels", f"feast:{world['repo']}"])  # fmt: skip
    assert out.exit_code == 1 and "feast:REPO_FOLDER#FEATURE_VIEW" in out.output
