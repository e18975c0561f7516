"""The fraud pipeline's warmup against a real tritonserver: the fused model (lookup, scorer,
decide, prediction log) is warmed in its ``initialize`` from the spec's sample row, so its first
request after load is within 2x of the median of the next ones, and no warmup row reaches the
prediction log. A lookup whose online store (Redis) is down at load still warms the model with
its defaults, says so in the server log, and loads."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import tritonclient.http as triton_http
import yaml

from tests.integration.fraud.conftest import _lookup, fraud_spec
from tests.integration.fraud.test_fraud_pipeline import arrays, heldout, infer
from tritonpipe.ensembles import build_repository
from tritonpipe.predlog import read_logs
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.redis_server import RedisServer

SAMPLE = {
    "account_id": np.array([7], dtype=np.int64),
    "amount": np.array([42.5], dtype=np.float32),
    "merchant_lat": np.array([40.7], dtype=np.float32),
    "merchant_lon": np.array([-74.0], dtype=np.float32),
    "timestamp": np.array([1.7e9], dtype=np.float64),
}


def _success_ns(client: triton_http.InferenceServerClient, model: str) -> int:
    (stats,) = client.get_inference_statistics(model)["model_stats"]
    return int(stats["inference_stats"]["success"]["ns"])


def _ms(
    client: triton_http.InferenceServerClient, model: str, rows: dict[str, np.ndarray]
) -> float:
    before = _success_ns(client, model)
    infer(client, model, rows, "r")
    return (_success_ns(client, model) - before) / 1e6


def test_fraud_first_request_is_warm_and_warmup_is_not_logged(
    fraud_world: Path, redis_log: RedisServer, tmp_path: Path
) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    for name, row in SAMPLE.items():
        np.save(samples / f"{name}.npy", row)
    logs = tmp_path / "logs"
    spec = fraud_spec(fraud_world, logs, redis_log.url)
    # A Redis online store nobody listens on: port 1 refuses at once.
    dead = {"type": "redis", "connection_string": "127.0.0.1:1"}
    spec["features"]["lookup_dead"] = _lookup("feature_repo_redis", "reject", online_store=dead)
    spec["ensembles"] = {
        "fraud": spec["ensembles"]["fraud"],
        "fraud_dead_store": {"steps": ["lookup_dead", "scorer"]},
    }
    warmup = {name: str(samples / f"{name}.npy") for name in SAMPLE}
    for ensemble in spec["ensembles"].values():
        ensemble["warmup"] = warmup
    (fraud_world / "warmup_pipeline.yaml").write_text(yaml.safe_dump(spec))
    repo = tmp_path / "repo"
    build_repository(fraud_world / "warmup_pipeline.yaml", repo)
    assert not (repo / "fraud" / "warmup").exists()  # no Triton model_warmup: it would be logged
    assert "model_warmup" not in (repo / "fraud" / "config.pbtxt").read_text()
    assert (repo / "fraud" / "1" / "warmup.json").is_file()
    rows = {n: v[:1] for n, v in arrays(heldout(fraud_world).iloc[:1]).items()}
    log = tmp_path / "server.log"
    with TritonServer(ServerOptions(repository=repo, exit_timeout_s=20), log_path=log) as server:
        client = triton_http.InferenceServerClient(server.http_url.split("://", 1)[-1])
        try:
            first = _ms(client, "fraud", rows)
            median = statistics.median(_ms(client, "fraud", rows) for _ in range(20))
            assert first <= 2 * median, f"fraud: first {first:.2f} ms, median {median:.2f}"
        finally:
            client.close()
        assert server.is_ready()  # fraud_dead_store loaded, warmed without its store
    text = log.read_text()
    assert "warmup: the online store of feature view" in text
    assert "could not be read" in text
    frame = read_logs(logs)  # written out on the clean stop
    assert len(frame) == 21, len(frame)  # the requests, not the warmup's two runs
    assert set(frame["request_id"]) == {"r"}
