"""Drift, windows, labels and quality over prediction logs written by the real Parquet sink, for
a pipeline unlike the examples: float features with NaN, a score output, string categories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tritonpipe.cli.main import app
from tritonpipe.errors import MonitorError
from tritonpipe.monitor import (
    Thresholds,
    build_profile,
    column_drift,
    join_labels,
    monitor,
    psi,
    quality,
)
from tritonpipe.monitor.logs import load
from tritonpipe.monitor.profile import Profile, profile_column
from tritonpipe.predlog import ParquetSink

NAMES = ["cat", "embedding", "weight"]
DAY = 86_400.0


def _features(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray[Any, Any]:
    x = np.column_stack(
        [rng.integers(0, 4, n).astype(float), rng.normal(0, 1, n), rng.gamma(2.0, 3.0, n)]
    )
    x[:, 2] += shift
    x[rng.random(n) < 0.01, 1] = np.nan  # nulls the user's pipeline lets through
    return x


def _score(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(1 / (1 + np.exp(-(np.nan_to_num(x[:, 1]) + 0.2 * x[:, 2] - 2))))


def _write(folder: Path, days: list[np.ndarray[Any, Any]], version: str = "3") -> None:
    sink = ParquetSink(folder, roll_rows=1000, roll_seconds=3600)
    records = []
    for d, x in enumerate(days):
        for i, (row, p) in enumerate(zip(x.tolist(), _score(x), strict=True)):
            records.append({"request_id": f"d{d}-{i}", "row": 0, "timestamp": d * DAY + i,
                            "model": "scorer", "model_version": version, "features": row,
                            "output_score": [float(p)]})  # fmt: skip
    sink.write(records)
    sink.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Profile]:
    rng = np.random.default_rng(1)
    ref = _features(rng, 5000)
    profile = build_profile(ref, NAMES, _score(ref), categorical=("cat",), threshold=0.5)
    folder = tmp_path_factory.mktemp("logs") / "log"
    _write(folder, [_features(rng, 2000), _features(rng, 2000), _features(rng, 2000, shift=6)])
    path = folder.parent / "profile.json"
    profile.save(path)
    return folder, profile


def test_psi_is_zero_for_equal_and_large_for_moved_distributions() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi([0.5, 0.5], [0.9, 0.1]) > 0.2


def test_only_the_shifted_feature_and_the_prediction_drift(logs: tuple[Path, Profile]) -> None:
    folder, profile = logs
    result = monitor(load(folder), profile, every="1d", prediction="output_score")
    assert [w.rows for w in result.windows] == [2000, 2000, 2000]
    assert [w.drifted for w in result.windows] == [[], [], ["weight", "prediction"]]
    assert result.model == "scorer" and result.version == "3"
    table = result.table()
    nulls = table[table["feature"] == "embedding"]["null_rate"]
    assert ((nulls > 0.003) & (nulls < 0.02)).all()
    assert table[table["feature"] == "weight"]["out_of_range"].iloc[-1] > 0
    # by count: the same windows
    by_count = monitor(load(folder), profile, every="2000", prediction="output_score")
    assert [w.drifted for w in by_count.windows] == [[], [], ["weight", "prediction"]]


def test_categories_training_never_saw_count_as_out_of_range() -> None:
    ref = profile_column("colour", np.array(["red", "blue"] * 500))
    same = column_drift(ref, np.array(["red", "blue"] * 200), Thresholds())
    moved = column_drift(ref, np.array(["red", "green", "green", "blue"] * 100), Thresholds())
    assert not same.drift and same.out_of_range == 0
    assert moved.drift and moved.out_of_range == pytest.approx(0.5)
    nulls = column_drift(ref, np.array([None] * 300, dtype=object), Thresholds())
    assert not nulls.drift and nulls.null_rate == 1 and nulls.p_value == 1


def test_labels_join_point_in_time_by_request_id_and_by_entity() -> None:
    preds = pd.DataFrame({"request_id": ["a", "b", "c"], "row": [0, 0, 0],
                          "timestamp": pd.to_datetime([10, 20, 30], unit="s", utc=True),
                          "entity_user": [1, 2, 1]})  # fmt: skip
    labels = pd.DataFrame({"request_id": ["a", "b", "c"], "row": [0, 0, 0], "label": [1, 0, 1],
                           "label_time": [100.0, 200.0, 300.0]})  # fmt: skip
    joined = join_labels(preds, labels, as_of=pd.Timestamp(250, unit="s", tz="UTC"))
    assert joined["label"].tolist()[:2] == [1, 0] and np.isnan(joined["label"].iloc[2])
    events = pd.DataFrame({"user": [1, 1, 2], "event_time": [5.0, 25.0, 50.0],
                           "label": [0, 1, 1], "label_time": [6.0, 26.0, 51.0]})  # fmt: skip
    by_entity = join_labels(preds, events, entity="user")
    assert by_entity["label"].tolist()[0] == 0 and np.isnan(by_entity["label"].iloc[1])
    assert by_entity["label"].iloc[2] == 1
    with pytest.raises(MonitorError, match="'label'"):
        join_labels(preds, labels.drop(columns="label"))


def test_live_quality_equals_the_offline_metrics_on_the_same_rows(
    logs: tuple[Path, Profile],
) -> None:
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    folder, profile = logs
    frame = load(folder)
    rng = np.random.default_rng(2)
    scores = np.array([s[0] for s in frame["output_score"]])
    truth = (rng.random(len(frame)) < scores).astype(int)
    late = rng.random(len(frame)) < 0.3  # not known yet
    labels = pd.DataFrame({"request_id": frame["request_id"], "row": 0, "label": truth,
                           "label_time": np.where(late, 1e9, 1.0)})  # fmt: skip
    joined = join_labels(frame, labels, as_of=pd.Timestamp(1000, unit="s", tz="UTC"))
    result = monitor(joined, profile, every="1d", prediction="output_score")
    for d, w in enumerate(result.windows):
        rows = (frame["request_id"].str.startswith(f"d{d}-") & ~late).to_numpy()
        y, s = truth[rows], scores[rows]
        assert w.quality is not None and w.quality.rows == rows.sum()
        assert w.quality.roc_auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert w.quality.precision == pytest.approx(precision_score(y, s >= 0.5), abs=1e-12)
        assert w.quality.recall == pytest.approx(recall_score(y, s >= 0.5), abs=1e-12)
    q = quality(np.array([1, 1, 0, 0]), np.array([0.95, 0.95, 0.05, 0.05]), 0.5)
    assert q.calibration_error == pytest.approx(0.05)


def test_cli_report_and_fail_on_drift(logs: tuple[Path, Profile], tmp_path: Path) -> None:
    folder, _ = logs
    profile = str(folder.parent / "profile.json")
    runner = CliRunner()
    base = ["monitor", "run", str(folder), "--profile", profile, "--prediction", "output_score"]
    report = tmp_path / "report.html"
    result = runner.invoke(app, [*base, "--report", str(report), "--fail-on-drift"])
    assert result.exit_code == 3, result.output
    assert "verdict: DRIFT in prediction, weight" in result.output
    assert '<img src="data:image/png;base64,' in report.read_text()
    calm = runner.invoke(app, [*base, "--window", "1d", "--psi", "100"])
    assert calm.exit_code == 0 and "verdict: no drift" in calm.output
    bad = runner.invoke(app, [*base[:3], "--profile", str(tmp_path / "none.json")])
    assert bad.exit_code == 1 and "no such reference profile" in bad.output
    wrong = runner.invoke(app, [*base, "--window", "soon"])
    assert wrong.exit_code == 1 and "--window 'soon'" in wrong.output
    missing = runner.invoke(app, [*base[:-1], "output_nope"])
    assert missing.exit_code == 1 and "no 'output_nope' column" in missing.output


def test_drift_streaks_count_windows_in_a_row_up_to_the_latest(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    ref = _features(rng, 5000)
    profile = build_profile(ref, NAMES, _score(ref), categorical=("cat",))
    moved = [_features(rng, 800, shift=s) for s in (6, 0, 6, 6)]
    _write(tmp_path / "a", [*moved, _features(rng, 50, shift=6)])
    result = monitor(load(tmp_path / "a"), profile, every="1d", prediction="output_score")
    both = ["weight", "prediction"]
    assert [w.drifted for w in result.windows] == [both, [], both, both, []]
    assert result.windows[-1].rows == 50  # too few rows for a verdict: the streak goes on
    assert result.streaks() == {"cat": 0, "embedding": 0, "weight": 2, "prediction": 2}
    _write(tmp_path / "b", [*moved[:3], _features(rng, 800)])
    back = monitor(load(tmp_path / "b"), profile, every="1d", prediction="output_score")
    assert back.streaks()["weight"] == 0  # a calm window ends it
