"""The fraud pipeline served by a real tritonserver with real Feast stores, registry and sinks."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tritonpipe.predlog import read_logs
from tritonpipe.repository.config import parse_pbtxt, to_pbtxt
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.redis_server import RedisServer

DTYPES = {"account_id": "INT64", "amount": "FP32", "merchant_lat": "FP32", "merchant_lon": "FP32"}
DTYPES["timestamp"] = "FP64"


def heldout(world: Path) -> pd.DataFrame:
    import feature_pipeline

    txns = pd.read_parquet(world / "data" / "transactions.parquet")
    return txns[txns["timestamp"] >= feature_pipeline.history_end(txns)].reset_index(drop=True)


def arrays(day: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {n: day[n].to_numpy().reshape(-1, 1) for n in DTYPES if n != "timestamp"}
    out["timestamp"] = (day["timestamp"].astype("int64").to_numpy() / 1e9).reshape(-1, 1)
    return {
        n: v.astype({"INT64": np.int64, "FP32": np.float32, "FP64": np.float64}[DTYPES[n]])
        for n, v in out.items()
    }


def infer(
    client: triton_http.InferenceServerClient, model: str, rows: dict[str, np.ndarray], rid: str
) -> dict[str, np.ndarray]:
    inputs = []
    for name, value in rows.items():
        tensor = triton_http.InferInput(name, list(value.shape), DTYPES[name])
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    result = client.infer(model, inputs, request_id=rid)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


@pytest.fixture
def client(fraud_server: TritonServer) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(fraud_server.http_url.split("://", 1)[-1])


def metric(server: TritonServer, name: str, sink: str) -> float:
    text = urllib.request.urlopen(server.metrics_url).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{sink="{sink}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def logged(source: str | Path, ids: set[str]) -> pd.DataFrame:
    frame = read_logs(source)
    return frame[frame["request_id"].isin(ids)].copy() if len(frame) else frame


def wait_for(check: Any, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.2)
    return check()


def test_build_records_registry_version_and_copies_feast_config(fraud_repository: Path) -> None:
    # Each ensemble fuses into one model: lookup, scorer and decide run in `fraud`.
    config = parse_pbtxt((fraud_repository / "fraud" / "config.pbtxt").read_text())
    assert config.parameters["tritonpipe.steps"].string_value == "lookup,scorer,decide"
    params = config.parameters
    assert params["tritonpipe.registry.scorer.version"].string_value == "1"
    assert params["tritonpipe.registry.scorer.uri"].string_value == "models:/fraud@champion"
    support = fraud_repository / "fraud" / "1" / "feature_lookup_lookup"
    assert (support / "feature_store.yaml").is_file() and (support / "registry.db").is_file()
    assert (support / "modules" / "fraud_features.py").is_file()
    plan = json.loads((fraud_repository / "fraud" / "1" / "plan.json").read_text())
    decide = next(s for s in plan["steps"] if s["name"] == "decide")
    assert decide["kwargs"] == {"threshold": "0.5"}


def test_no_skew_between_training_and_served_feature_vectors(
    fraud_world: Path, fraud_server: TritonServer, client: triton_http.InferenceServerClient
) -> None:
    """The served vectors (read back from the prediction log) equal the training path's."""
    import train

    day = heldout(fraud_world).iloc[:120]
    rows = arrays(day)
    for i in range(len(day)):
        infer(client, "fraud", {n: v[i : i + 1] for n, v in rows.items()}, f"skew-{i}")
    logs = fraud_world / "logs" / "fraud"
    wanted = {f"skew-{i}" for i in range(len(day))}
    served = wait_for(lambda: f if len(f := logged(logs, wanted)) == len(day) else None)
    served["i"] = served["request_id"].str.removeprefix("skew-").astype(int)
    served = served.sort_values("i")
    assert (served["model_version"] == "1").all() and (served["pipeline"] == "fraud").all()
    assert served["entity_account_id"].tolist() == day["account_id"].tolist()
    training, _ = train.training_set(day, fraud_world / "feature_repo")
    np.testing.assert_allclose(
        np.stack(served["features"].to_numpy()), training, rtol=1e-6, atol=1e-6
    )


def test_unknown_entity_gets_defaults_and_a_flag(
    client: triton_http.InferenceServerClient, fraud_world: Path
) -> None:
    rows = arrays(heldout(fraud_world).iloc[:2])
    rows["account_id"] = np.array([[rows["account_id"][0, 0]], [987654321]], dtype=np.int64)
    out = infer(client, "fraud", rows, "missing-defaults")
    assert out["entity_found"].reshape(-1).tolist() == [True, False]
    assert np.isfinite(out["probability"]).all()


def test_unknown_entity_is_rejected_by_name_under_reject(
    client: triton_http.InferenceServerClient, fraud_world: Path
) -> None:
    rows = arrays(heldout(fraud_world).iloc[:1])
    rows["account_id"] = np.array([[987654321]], dtype=np.int64)
    with pytest.raises(
        InferenceServerException, match="account_id=987654321 is not in the online store"
    ) as info:
        infer(client, "fraud_strict", rows, "missing-reject")
    assert info.value.status() == "400"
    good = arrays(heldout(fraud_world).iloc[:1])
    assert np.isfinite(infer(client, "fraud_strict", good, "known")["logit"]).all()


def test_redis_online_store_serves_the_same_features_as_sqlite(
    client: triton_http.InferenceServerClient, fraud_world: Path
) -> None:
    rows = arrays(heldout(fraud_world).iloc[:16])
    sqlite = infer(client, "fraud_strict", rows, "sqlite")["logit"]
    redis = infer(client, "fraud_redis_store", rows, "redis")["logit"]
    np.testing.assert_array_equal(sqlite, redis)


def test_redis_stream_sink_and_redis_stopped_mid_run(
    client: triton_http.InferenceServerClient,
    fraud_world: Path,
    fraud_server: TritonServer,
    redis_log: RedisServer,
) -> None:
    rows = arrays(heldout(fraud_world).iloc[:4])
    for i in range(5):
        infer(client, "fraud_redis_log", rows, f"stream-{i}")
    ids = {f"stream-{i}" for i in range(5)}
    frame = wait_for(lambda: f if len(f := logged(f"{redis_log.url}#fraud", ids)) == 20 else None)
    assert set(frame["request_id"]) == ids
    assert len(frame["features"].iloc[0]) == 13
    assert wait_for(lambda: metric(fraud_server, "tritonpipe_predlog_records_total", "redis") >= 20)
    redis_log.stop()
    for i in range(30):  # every prediction still answers while the sink is gone
        out = infer(client, "fraud_redis_log", rows, f"down-{i}")
        assert out["probability"].shape == (4, 1)
        time.sleep(0.1)
    assert wait_for(
        lambda: (
            infer(client, "fraud_redis_log", rows, "poke")
            and metric(fraud_server, "tritonpipe_predlog_errors_total", "redis") > 0
        ),
        timeout_s=30,
    )
    log = (fraud_world / "repository").parent / "tritonserver.log"
    assert "prediction log sink 'redis' failed" in log.read_text()


def test_sigterm_under_load_loses_no_record_of_an_answered_request(
    fraud_repository: Path, fraud_world: Path, tmp_path: Path
) -> None:
    repo, logs = tmp_path / "repository", tmp_path / "logs"
    shutil.copytree(fraud_repository / "fraud", repo / "fraud")  # lookup, scorer, decide fused
    config_path = repo / "fraud" / "config.pbtxt"
    config = parse_pbtxt(config_path.read_text())
    predlog = json.loads(config.parameters["tritonpipe.predlog"].string_value)
    predlog["sink"] = {"type": "parquet", "path": str(logs), "roll_seconds": 30}
    config.parameters["tritonpipe.predlog"].string_value = json.dumps(predlog)
    config_path.write_text(to_pbtxt(config))
    rows = arrays(heldout(fraud_world).iloc[:8])
    server = TritonServer(
        ServerOptions(repository=repo, exit_timeout_s=30), log_path=tmp_path / "triton.log"
    ).start()
    answered: list[str] = []
    lock = threading.Lock()

    def load(worker: int) -> None:
        client = triton_http.InferenceServerClient(server.http_url.split("://", 1)[-1])
        try:
            for n in range(100_000):
                rid = f"w{worker}-{n}"
                infer(client, "fraud", rows, rid)
                with lock:
                    answered.append(rid)
        except Exception:  # noqa: BLE001 - the server went away: this worker is done
            pass
        finally:
            client.close()

    workers = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for w in workers:
        w.start()
    wait_for(lambda: len(answered) >= 200 or None, timeout_s=60)
    server.stop()  # SIGTERM while the workers keep sending
    for w in workers:
        w.join(30)
    frame = read_logs(logs)
    assert len(answered) >= 200
    missing = set(answered) - set(frame["request_id"])
    assert not missing, (
        f"{len(missing)} answered requests have no log record, e.g. {sorted(missing)[:3]}"
    )
    assert len(frame) == len(set(frame["request_id"])) * 8  # one record per row


def test_redis_lookup_asks_for_the_same_fields_on_every_call(
    fraud_repository: Path, fraud_world: Path
) -> None:
    """Feast's Redis online_read appends "_ts:<view>" to the feature list it is handed. Handed
    the lookup's own list, each call asked Redis for one more field than the last: a server got
    slower with every request it answered."""
    from tritonpipe.features.runtime import OnlineLookup

    support = next((fraud_repository / "fraud_redis_store" / "1").glob("feature_lookup_*"))
    lookup = OnlineLookup(support)
    asked = [list(v.features) for v in lookup.views]
    keys = {"account_id": arrays(heldout(fraud_world).iloc[:8])["account_id"]}
    first, found = lookup.read(keys)
    assert found.all()
    for _ in range(20):
        again, _ = lookup.read(keys)
    assert [list(v.features) for v in lookup.views] == asked
    assert again.keys() == first.keys()
    for name, values in first.items():
        np.testing.assert_array_equal(again[name], values)
