"""Champion and challenger without a server: canary weights, the shadow's plan, spec checks,
the spec variants, and comparing logs (agreement, deltas, bootstrap intervals, labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tritonpipe.compare import bootstrap_ci, compare_logs, read_labels, write_report
from tritonpipe.compare.logs import is_shadow
from tritonpipe.compare.quality import auc
from tritonpipe.deploy.canary import canary_weights, expected_share
from tritonpipe.ensembles.spec import PipelineSpec, shadowed_models
from tritonpipe.errors import DeployError, PredictionLogError
from tritonpipe.shadow.build import challenger_plan
from tritonpipe.shadow.variants import variant


@pytest.mark.parametrize(("share", "canaries", "total"), [(0.1, 1, 2), (0.1, 1, 3), (0.25, 2, 5),
                                                          (0.01, 1, 4), (0.5, 1, 2)])  # fmt: skip
def test_canary_weights_give_the_share(share: float, canaries: int, total: int) -> None:
    weights = canary_weights(share, canaries, total)
    assert all(1 <= w <= 256 for w in weights)
    assert expected_share(weights, canaries, total) == pytest.approx(share, abs=0.002)


def test_canary_weights_refuse_bad_shares_and_counts() -> None:
    with pytest.raises(DeployError, match="between 0 and 1"):
        canary_weights(10, 1, 2)
    with pytest.raises(DeployError, match="keep at least one replica on the champion"):
        canary_weights(0.1, 2, 2)


def decl(name: str, tensor: str) -> dict[str, object]:
    return {"name": name, "tensor": tensor, "dtype": "FP32", "shape": [1]}


def test_challenger_plan_starts_at_the_scoring_step_and_reads_earlier_tensors() -> None:
    plan = {
        "name": "p", "max_batch_size": 8, "inputs": [decl("a", "a")],
        "outputs": [decl("out", "out")],
        "steps": [
            {"name": "prep", "kind": "stage", "file": "s.py", "inputs": [decl("a", "a")],
             "outputs": [decl("v", "vec")]},
            {"name": "m", "kind": "onnx", "file": "m.onnx", "inputs": [decl("x", "vec")],
             "outputs": [decl("y", "logit")]},
            {"name": "post", "kind": "stage", "file": "s.py",
             "inputs": [decl("logit", "logit"), decl("a", "a")], "outputs": [decl("out", "out")]},
        ],
    }  # fmt: skip
    shadow = challenger_plan(plan, "m", "shadow_m.onnx")
    assert [s["name"] for s in shadow["steps"]] == ["m", "post"]
    assert shadow["steps"][0]["file"] == "shadow_m.onnx"
    assert plan["steps"][1]["file"] == "m.onnx"  # the champion's plan is untouched
    assert [d["name"] for d in shadow["inputs"]] == ["vec", "a"]
    assert shadow["outputs"] == plan["outputs"]


SPEC = {
    "stages": {},
    "models": {
        "scorer": {
            "registry": "models:/fraud@champion", "format": "onnx",
            "shadow": {"registry": "models:/fraud@challenger", "sample": 0.2},
        },
        "other": {"export": "e", "format": "onnx"},
    },
}  # fmt: skip


def test_a_spec_says_which_models_shadow() -> None:
    spec = PipelineSpec.model_validate(SPEC)
    shadows = shadowed_models(spec)
    assert list(shadows) == ["scorer"] and shadows["scorer"].sample == 0.2
    bad = {**SPEC, "models": {"m": {"export": "e", "format": "onnx", "shadow": {"sample": 0.5}}}}
    with pytest.raises(ValueError, match="exactly one of registry"):
        PipelineSpec.model_validate(bad)
    bad["models"]["m"]["shadow"] = {"export": "x", "sample": 1.5}
    with pytest.raises(ValueError, match="less than or equal to 1"):
        PipelineSpec.model_validate(bad)


def test_variants_build_the_champion_without_shadow_and_the_challenger_from_it() -> None:
    champion = variant(SPEC, "champion")
    assert "shadow" not in champion["models"]["scorer"]
    assert champion["models"]["scorer"]["registry"] == "models:/fraud@champion"
    challenger = variant(SPEC, "challenger")
    assert challenger["models"]["scorer"]["registry"] == "models:/fraud@challenger"
    assert challenger["models"]["other"] == SPEC["models"]["other"]
    PipelineSpec.model_validate(challenger)


def logs(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    label = rng.random(n) < 0.3
    champion = np.clip(label * 0.4 + rng.random(n) * 0.6, 0, 1)
    challenger = np.clip(label * 0.6 + rng.random(n) * 0.4, 0, 1)
    ids = [f"r{i}" for i in range(n)]
    served = pd.DataFrame(
        {
            "request_id": ids,
            "row": 0,
            "model_version": "3",
            "output_probability": champion,
            "output_alert": champion > 0.5,
            "latency_ms": np.linspace(1.0, 3.0, n),
        }
    )
    shadow = pd.DataFrame({"request_id": ids[: n // 2], "row": 0, "model_version": "4",
                           "output_probability": challenger[: n // 2],
                           "output_alert": challenger[: n // 2] > 0.5, "shadow": True,
                           "latency_ms": 0.4})  # fmt: skip
    labels = pd.DataFrame({"request_id": ids, "label": label.astype(int)})
    return pd.concat([served, shadow], ignore_index=True), labels


def test_compare_pairs_shadow_records_and_gives_quality_with_intervals(tmp_path: Path) -> None:
    frame, labels = logs()
    result = compare_logs(frame, labels=labels, resamples=200)
    assert (result.champion, result.challenger, result.pairs) == ("3", "4", 200)
    assert result.decision == "alert" and result.score == "probability"
    half = frame.iloc[:200]
    shadow = frame[is_shadow(frame)]
    agree = (half["output_alert"].to_numpy() == shadow["output_alert"].to_numpy()).mean()
    assert result.agreement == pytest.approx(agree)
    delta = shadow["output_probability"].to_numpy() - half["output_probability"].to_numpy()
    assert result.delta_mean == pytest.approx(delta.mean())
    by_role = {v.role: v for v in result.versions}
    assert by_role["served"].records == 400 and by_role["shadow"].records == 200
    assert by_role["shadow"].latency_ms_p50 == pytest.approx(0.4)
    assert by_role["served"].latency_ms_p50 == pytest.approx(2.0)
    assert by_role["served"].latency_ms_p99 == pytest.approx(
        np.percentile(np.linspace(1, 3, 400), 99)
    )
    for v in result.versions:
        assert v.auc is not None and v.auc[1] <= v.auc[0] <= v.auc[2]
    # The challenger was made better: its AUC interval sits above the champion's point.
    assert by_role["shadow"].auc[1] > by_role["served"].auc[0]  # type: ignore[index]
    text = "\n".join(result.lines())
    assert "decision agreement" in text and "95% bootstrap" in text
    assert "latency p50 2.00 ms p99 2.98 ms" in text
    assert "compute per request p50 0.40 ms p99 0.40 ms" in text
    report = write_report(result, tmp_path / "report")
    assert "![" in report.read_text() and (tmp_path / "report" / "scores.png").is_file()


def test_compare_without_a_second_version_or_with_an_unknown_output_says_so() -> None:
    frame, _ = logs()
    only = frame[frame["model_version"] == "3"]
    with pytest.raises(PredictionLogError, match="need the champion"):
        compare_logs(only)
    with pytest.raises(PredictionLogError, match="no output 'score'"):
        compare_logs(frame, score="score")


def test_auc_and_bootstrap_on_known_cases() -> None:
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    point, low, high = bootstrap_ci(auc, np.tile(y, 50), np.tile([0.1, 0.6, 0.4, 0.9], 50))
    assert point == pytest.approx(0.75) and low < 0.75 < high


def test_labels_reader_names_missing_columns_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"txn": ["a"], "label": [1]}).to_parquet(path)
    with pytest.raises(PredictionLogError, match=r"need columns \['request_id'\]"):
        read_labels(path)
    assert read_labels(path, id_column="txn")["request_id"].tolist() == ["a"]
    pd.DataFrame({"request_id": ["a"], "label": ["fraud"]}).to_parquet(path)
    with pytest.raises(PredictionLogError, match="must hold 0/1 or booleans"):
        read_labels(path)
