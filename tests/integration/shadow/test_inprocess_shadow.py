"""Batch and stream jobs shadow as the server does: the in-process pipeline scores the sampled
share of rows with the challenger too, on the same feature vector; both versions reach the
spec's prediction log tagged with their versions, and the job's output is the champion's."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import yaml

from tests.assets.challenger.churn_models import CHALLENGER, CHAMPION
from tritonpipe.batch import parse_config, run_job
from tritonpipe.compare.logs import is_shadow
from tritonpipe.predlog import read_logs
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config
from tritonpipe.stream.replay import replay

SAMPLE = 0.3


def score(vectors: np.ndarray, version: tuple[list[float], float]) -> np.ndarray:
    weights, bias = version
    logits = np.asarray(vectors, dtype=np.float32) @ np.array(weights, dtype=np.float32) + bias
    return 1 / (1 + np.exp(-logits))


@pytest.fixture
def churn_copy(churn_spec: Path, tmp_path: Path) -> Path:
    """The churn example (both versions exported) in a folder of its own: its log is too."""
    root = tmp_path / "churn"
    shutil.copytree(churn_spec.parent, root, ignore=shutil.ignore_patterns("build", "compare*"))
    return root / "pipeline.yaml"


def check_logs(folder: Path, scored: int) -> pd.DataFrame:
    frame = read_logs(folder)
    served, shadow = frame[~is_shadow(frame)], frame[is_shadow(frame)]
    assert len(served) == scored and served["request_id"].is_unique
    # Binomial(n, 0.3) shadow records: four standard deviations either way.
    spread = 4 * math.sqrt(scored * SAMPLE * (1 - SAMPLE))
    assert abs(len(shadow) - scored * SAMPLE) <= spread, len(shadow)
    assert served["model_version"].nunique() == 1 and shadow["model_version"].nunique() == 1
    assert served["model_version"].iloc[0] != shadow["model_version"].iloc[0]
    assert served["latency_ms"].notna().all() and shadow["latency_ms"].notna().all()
    pairs = served.merge(shadow, on=["request_id", "row"], suffixes=("", "_shadow"))
    assert len(pairs) == len(shadow)  # every challenger record pairs with its champion's
    vectors = np.stack(pairs["features"].to_list())
    assert (vectors == np.stack(pairs["features_shadow"].to_list())).all()  # one vector
    np.testing.assert_allclose(pairs["output_probability"], score(vectors, CHAMPION), atol=1e-5)
    np.testing.assert_allclose(
        pairs["output_probability_shadow"], score(vectors, CHALLENGER), atol=1e-5
    )
    return frame


def test_a_batch_job_shadows_and_writes_the_champions_outputs(
    churn_copy: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    n = 500
    rows = pd.DataFrame(
        {
            "customer": np.arange(n, dtype=np.int64),
            "usage": list(rng.normal(0, 2, size=(n, 3))),
            "plan": rng.integers(0, 50, n).astype(np.int64),
        }
    )
    rows.to_parquet(tmp_path / "customers.parquet")
    config = parse_config(
        {
            "pipeline": str(churn_copy),
            "model": "churn",
            "source": {"type": "parquet", "path": str(tmp_path / "customers.parquet"),
                       "rows_per_unit": 200},
            "output": {"type": "parquet", "path": str(tmp_path / "scores")},
            "key": ["customer"],
            "batch_size": 32,
        }
    )  # fmt: skip
    summary = run_job(config, progress=False)
    assert summary.rows == n
    out = pd.read_parquet(tmp_path / "scores").set_index("customer").sort_index()
    vectors = np.column_stack([np.stack(rows["usage"].to_list()), rows["plan"] % 5])
    np.testing.assert_allclose(out["probability"], score(vectors, CHAMPION), atol=1e-5)
    # The versions differ: an output holding the challenger's score would be seen.
    assert (np.abs(score(vectors, CHALLENGER) - score(vectors, CHAMPION)) > 1e-3).mean() > 0.8
    check_logs(churn_copy.parent / "churn_logs", n)


@pytest.fixture(scope="module")
def redis_bus(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    server = RedisServer(tmp_path_factory.mktemp("shadow_redis")).start()
    yield server  # type: ignore[misc]
    server.stop()


def test_a_stream_worker_shadows_and_answers_with_the_champion(
    churn_copy: Path, redis_bus: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "stream.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "pipeline": str(churn_copy),
                "name": "churn",
                "bus": {"type": "redis", "url": redis_bus.url, "stream": "churn:in",
                        "output": "churn:out", "dead_letter": "churn:dead"},
                "inputs": {"usage": {"field": "usage"}, "plan": {"field": "plan"}},
                "batch": {"max_events": 16, "max_wait_ms": 10},
            }
        )
    )  # fmt: skip
    config = load_config(path)
    rng = np.random.default_rng(4)
    n = 300
    sent = [
        {"id": f"c{i}", "usage": rng.normal(0, 2, 3).tolist(), "plan": int(rng.integers(0, 50))}
        for i in range(n)
    ]
    replay(config, sent)
    worker = build_worker(config, consumer="shadowing")
    try:
        deadline = time.monotonic() + 120
        while worker.counts.scored < n and time.monotonic() < deadline:
            worker.handle(worker.source.read(16, 100))
    finally:
        worker.close()  # the challenger scores what it has queued, the logs flush
    assert worker.counts.scored == n and worker.counts.dead == 0
    r = redis.Redis.from_url(redis_bus.url)
    bodies = [json.loads(fields[b"body"]) for _, fields in r.xrange("churn:out")]
    answers = {body["id"]: body["outputs"] for body in bodies}
    assert len(answers) == n
    for event in sent:
        vector = [[*event["usage"], event["plan"] % 5]]
        assert answers[event["id"]]["probability"] == pytest.approx(
            float(score(np.array(vector), CHAMPION)[0]), abs=1e-5
        )
    check_logs(churn_copy.parent / "churn_logs", n)


def test_a_pipeline_logs_rows_under_the_callers_request_ids(churn_copy: Path) -> None:
    from tritonpipe.errors import PipelineError
    from tritonpipe.pipeline import Pipeline

    rng = np.random.default_rng(5)
    n = 100  # above max_batch_size 32: ids follow the rows across chunks
    frame = pd.DataFrame({"usage": list(rng.normal(0, 2, size=(n, 3))),
                          "plan": rng.integers(0, 50, n)})  # fmt: skip
    ids = [f"order-{i}" for i in range(n)]
    with Pipeline.load(churn_copy) as pipe:
        with pytest.raises(PipelineError, match="3 request ids for 100 rows"):
            pipe(frame, request_ids=ids[:3])
        out = pipe(frame, request_ids=ids)
    assert set(out) == {"probability", "churn"}  # nothing the shadow needed leaks out
    logs = check_logs(churn_copy.parent / "churn_logs", n)
    served = logs[~is_shadow(logs)].set_index("request_id").loc[ids]
    np.testing.assert_allclose(served["output_probability"], out["probability"][:, 0], atol=1e-6)
