"""The fraud pipeline's warmup against a real tritonserver: the fused model (lookup, scorer,
decide, prediction log) is warmed in its ``initialize`` from the spec's sample row and its
prediction-log sink is connected there, so its first request after a load (the median of three
loads, each a new Python-backend process) is within 2x of the median of the next ones, and no
warmup row reaches the prediction log. A lookup whose online store (Redis) is down at load still warms the model with
its defaults, says so in the server log, and loads."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import tritonclient.http as triton_http
import yaml

from tests.integration.counted import server_ms
from tests.integration.fraud.conftest import _lookup, fraud_spec
from tests.integration.fraud.test_fraud_pipeline import arrays, heldout, infer
from tritonpipe.ensembles import build_repository
from tritonpipe.predlog import read_logs
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.redis_server import RedisServer

LOADS, NEXT = 3, 10
SAMPLE = {
    "account_id": np.array([7], dtype=np.int64),
    "amount": np.array([42.5], dtype=np.float32),
    "merchant_lat": np.array([40.7], dtype=np.float32),
    "merchant_lon": np.array([-74.0], dtype=np.float32),
    "timestamp": np.array([1.7e9], dtype=np.float64),
}


def _ms(
    client: triton_http.InferenceServerClient, model: str, rows: dict[str, np.ndarray]
) -> float:
    return server_ms(client, model, lambda: infer(client, model, rows, "r"))


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
    options = ServerOptions(
        repository=repo,
        exit_timeout_s=20,
        model_control="explicit",
        models=("fraud", "fraud_dead_store"),
    )
    with TritonServer(options, log_path=log) as server:
        client = triton_http.InferenceServerClient(server.http_url.split("://", 1)[-1])
        firsts, nexts = [], []
        try:
            for load in range(LOADS):
                if load:
                    client.load_model("fraud")  # a new instance in a new stub process
                firsts.append(_ms(client, "fraud", rows))
                nexts += [_ms(client, "fraud", rows) for _ in range(NEXT)]
        finally:
            client.close()
        first, median = statistics.median(firsts), statistics.median(nexts)
        shown = ", ".join(f"{f:.2f}" for f in firsts)
        assert first <= 2 * median, f"fraud: first after load {shown} ms, median next {median:.2f}"
        assert server.is_ready()  # fraud_dead_store loaded, warmed without its store
    text = log.read_text()
    assert "warmup: the online store of feature view" in text
    assert "could not be read" in text
    frame = read_logs(logs)  # written out on the clean stop
    # The requests, not the warmup's two runs of each load.
    assert len(frame) == LOADS * (1 + NEXT), len(frame)
    assert set(frame["request_id"]) == {"r"}
