"""Shadow scoring on a real tritonserver: the challenger scores the sampled share of requests
(within binomial tolerance) on the champion's feature vector, its outputs reach the prediction
log tagged with its version and the champion's request id, and never an answer."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as http
from typer.testing import CliRunner

from tests.assets.challenger.churn_models import CHALLENGER, CHAMPION
from tritonpipe.cli.main import app
from tritonpipe.compare.logs import is_shadow
from tritonpipe.predlog import read_logs
from tritonpipe.server import TritonServer

REQUESTS = 400
SAMPLE = 0.3


def expected(usage: np.ndarray, plan: np.ndarray, version: tuple[list[float], float]) -> float:
    vector = np.concatenate([usage.astype(np.float32), (plan % 5).astype(np.float32)])
    weights, bias = version
    return float(1 / (1 + np.exp(-(vector @ np.array(weights, dtype=np.float32) + bias))))


def send(server: TritonServer, count: int, seed: int) -> dict[str, tuple[float, dict[str, object]]]:
    rng = np.random.default_rng(seed)
    client = http.InferenceServerClient(server.http_url.split("://", 1)[1])
    answers = {}
    try:
        for i in range(count):
            usage = rng.normal(0, 2, size=(1, 3))  # float64, as users send it
            plan = rng.integers(0, 50, size=(1, 1))
            inputs = [
                http.InferInput("usage", [1, 3], "FP64"),
                http.InferInput("plan", [1, 1], "INT64"),
            ]
            inputs[0].set_data_from_numpy(usage)
            inputs[1].set_data_from_numpy(plan.astype(np.int64))
            request_id = f"s{seed}-{i}"
            result = client.infer("churn", inputs, request_id=request_id)
            names = {o["name"] for o in result.get_response()["outputs"]}
            champion = expected(usage[0], plan[0], CHAMPION)
            answers[request_id] = (float(result.as_numpy("probability")[0, 0]), {
                "names": names, "champion": champion,
                "challenger": expected(usage[0], plan[0], CHALLENGER),
            })  # fmt: skip
    finally:
        client.close()
    return answers


def wait_for_logs(folder: Path, wanted: int, timeout_s: float = 60.0) -> pd.DataFrame:
    deadline = time.monotonic() + timeout_s
    while True:
        frame = read_logs(folder) if folder.is_dir() else pd.DataFrame()
        if len(frame) >= wanted or time.monotonic() > deadline:
            return frame
        time.sleep(0.5)


def test_shadow_scores_the_sampled_share_into_the_log_and_never_into_an_answer(
    churn_server: TritonServer, churn_spec: Path
) -> None:
    answers = send(churn_server, REQUESTS, seed=1)
    for probability, info in answers.values():
        assert info["names"] == {"probability", "churn"}
        assert probability == pytest.approx(info["champion"], abs=1e-5)
    # The versions do differ: an answer holding a challenger's score would be seen.
    gaps = [abs(p - float(info["challenger"])) for p, info in answers.values()]
    assert np.mean(np.array(gaps) > 1e-3) > 0.8
    logs = churn_spec.parent / "build" / "churn_logs"
    low = REQUESTS * SAMPLE - 4 * math.sqrt(REQUESTS * SAMPLE * (1 - SAMPLE))
    frame = wait_for_logs(logs, REQUESTS + int(low))
    time.sleep(1.0)  # a last shadow batch may still be on its way
    frame = read_logs(logs)
    shadow = frame[is_shadow(frame)]
    served = frame[~is_shadow(frame)]
    assert len(served) == REQUESTS
    assert set(served["request_id"]) == set(answers)
    # Binomial(400, 0.3): mean 120, sd 9.2; four sd either way.
    spread = 4 * math.sqrt(REQUESTS * SAMPLE * (1 - SAMPLE))
    assert abs(len(shadow) - REQUESTS * SAMPLE) <= spread, len(shadow)
    assert set(shadow["request_id"]) <= set(answers)
    assert served["model_version"].nunique() == 1 and shadow["model_version"].nunique() == 1
    # Both versions' latencies are in the log: the champion's as it answered, the shadow's.
    assert served["latency_ms"].notna().all() and (served["latency_ms"] > 0).all()
    assert shadow["latency_ms"].notna().all() and (shadow["latency_ms"] > 0).all()
    assert served["model_version"].iloc[0] != shadow["model_version"].iloc[0]
    pairs = served.merge(shadow, on=["request_id", "row"], suffixes=("", "_shadow"))
    assert len(pairs) == len(shadow)
    for _, pair in pairs.iterrows():
        assert list(pair["features"]) == list(pair["features_shadow"])  # one vector, both scored
        probability, info = answers[pair["request_id"]]
        assert pair["output_probability"] == pytest.approx(probability, abs=1e-6)
        assert pair["output_probability_shadow"] == pytest.approx(info["challenger"], abs=1e-5)

    # `tritonpipe logs compare` over the same logs, with labels keyed by request id.
    rng = np.random.default_rng(7)
    labels = pd.DataFrame(
        {"request_id": list(answers), "label": [int(rng.random() < p) for p, _ in answers.values()]}
    )
    labels.to_parquet(churn_spec.parent / "labels.parquet")
    report = churn_spec.parent / "compare"
    result = CliRunner().invoke(
        app,
        ["logs", "compare", str(logs), "--labels", str(churn_spec.parent / "labels.parquet"),
         "--report", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"shadow pairs: {len(shadow):,}" in result.output
    assert "AUC" in result.output and "(shadow)" in result.output
    assert "(served)" in result.output and ", latency p50 " in result.output
    assert "compute per request p50 " in result.output
    assert (report / "report.md").is_file() and (report / "pairs.png").is_file()
