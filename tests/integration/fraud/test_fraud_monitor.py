"""The fraud example's monitoring "done means": on K normal days the verdict fires on at most
5% of (feature, day) pairs at the default thresholds; on the day whose amounts were scaled and
whose online shops grew it fires on the amount features, the merchant category and the
prediction, not on the untouched ones; quality per day from
late labels equals the offline metric on the same rows; the registry version carries the
profile."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tritonpipe.monitor import join_labels, monitor
from tritonpipe.monitor.logs import load
from tritonpipe.monitor.profile import Profile

FRAUD = Path(__file__).parents[3] / "examples" / "fraud"
AMOUNT = {"log_amount", "amount_ratio_7d", "amount_z_7d", "amount_ratio_max_7d"}


def _example() -> Any:
    sys.path.insert(0, str(FRAUD))
    return importlib.import_module("monitoring")


def _check(out: Path, accounts: int, days: int) -> None:
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    scenario = _example().scenario(out, accounts=accounts, days=days)
    profile = Profile.load(out / "profile.json")
    normal = monitor(load(out / "normal"), profile, every="1d")
    pairs = [(c.feature, w.window.label) for w in normal.windows for c in w.columns]
    fired = [(c.feature, w.window.label) for w in normal.windows for c in w.columns if c.drift]
    assert len(normal.windows) == days - 14 and len(fired) <= 0.05 * len(pairs), fired
    drifted = monitor(load(out / "drifted"), profile, every="1d")
    assert len(drifted.windows) == 1
    flagged = set(drifted.windows[0].drifted)
    assert flagged >= {"log_amount", "merchant_category", "prediction"}, flagged
    assert flagged <= AMOUNT | {"merchant_category", "prediction"}, flagged  # the rest: quiet
    category = drifted.windows[0].columns[[c.feature for c in drifted.windows[0].columns]
                                          .index("merchant_category")]  # fmt: skip
    assert category.statistic > 0 and category.p_value < 1e-6  # chi-square on the categories
    # Labels arrive three days late: as of the end, the last three days have none yet.
    frame = load(out / "normal")
    labels = pd.read_parquet(out / "labels.parquet")
    as_of = frame["timestamp"].max()
    joined = join_labels(frame, labels, as_of=as_of)
    result = monitor(joined, profile, every="1d")
    # Offline: the transactions whose chargeback is known by then, each paired with its logged
    # score by request id (not by position: transactions 1 ms apart from different accounts
    # tie on the timestamp, and the logs order ties by request id).
    txns = scenario["txns"].assign(request_id="t" + scenario["txns"]["txn_id"].astype(str))
    offline = txns.merge(frame[["request_id", "output_probability"]], on="request_id")
    assert len(offline) == len(txns) == len(frame)
    for w in result.windows:
        on = offline[(offline["timestamp"] >= w.window.start)
                     & (offline["timestamp"] < w.window.end)
                     & (offline["timestamp"] + pd.Timedelta(days=3) <= as_of)]  # fmt: skip
        if not len(on):
            assert w.quality is None
            continue
        y = on["is_fraud"].to_numpy().astype(int)
        s = on["output_probability"].to_numpy()
        assert w.quality is not None and w.quality.rows == len(on)
        assert w.quality.roc_auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert w.quality.precision == pytest.approx(precision_score(y, s >= 0.5), abs=1e-12)
        assert w.quality.recall == pytest.approx(recall_score(y, s >= 0.5), abs=1e-12)
    assert sum(w.quality is None for w in result.windows) == 3


def test_fraud_monitor_done_means(tmp_path: Path) -> None:
    _check(tmp_path, accounts=1500, days=21)


@pytest.mark.long
def test_fraud_monitor_done_means_at_full_size(tmp_path: Path) -> None:
    _check(tmp_path, accounts=5000, days=28)


@pytest.mark.slow  # exports an ONNX model and runs MLflow: minutes on a loaded machine
def test_profile_is_an_artifact_of_the_registry_version(tmp_path: Path) -> None:
    from tritonpipe.export import export
    from tritonpipe.monitor import build_profile
    from tritonpipe.registry import fetch_profile, register
    from tritonpipe.tensors import TensorSpec

    spec = TensorSpec(name="features", dtype="FP32", shape=(13,))
    export(f"{FRAUD / 'fraud_model.py'}:untrained", [(spec, (13,))], tmp_path / "export",
           formats=["onnx"], max_batch_size=8, output_names=["logit"])  # fmt: skip
    profile = tmp_path / "profile.json"
    rng = np.random.default_rng(0)
    build_profile(rng.normal(size=(500, 2)), ["a", "b"], rng.random(500)).save(profile)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = register(tmp_path / "export", name="m", tracking_uri=uri, profile=profile)
    back = fetch_profile(f"models:/m/{version}", tracking_uri=uri, dest=tmp_path / "back.json")
    assert Profile.load(back).to_json() == Profile.load(profile).to_json()
    register(tmp_path / "export", name="bare", tracking_uri=uri)
    from tritonpipe.errors import RegistryError

    with pytest.raises(RegistryError, match="without a reference profile|no reference profile"):
        fetch_profile("models:/bare/1", tracking_uri=uri, dest=tmp_path / "none.json")
