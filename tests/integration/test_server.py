"""Launcher behaviour against real tritonserver processes: token, explicit model control, clean
shutdown with requests in flight, crash supervision, load failures."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ASSETS
from tritonpipe.client import Client
from tritonpipe.ensembles import build_repository
from tritonpipe.errors import ClientError, ServerError, Unauthorized
from tritonpipe.server import ServerOptions, TritonServer

X = {"x": np.ones((1, 4), np.float32)}


@pytest.fixture(scope="module")
def small_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small") / "repo"
    build_repository(ASSETS / "test_pipeline.yaml", out)
    return out


def start(repository: Path, tmp_path: Path, **options: object) -> TritonServer:
    opts = ServerOptions(repository=repository, exit_timeout_s=10, **options)  # type: ignore[arg-type]
    return TritonServer(opts, log_path=tmp_path / "server.log", ready_timeout_s=60).start()


def test_token_protects_endpoints_on_both_protocols(small_repository: Path, tmp_path: Path) -> None:
    server = start(small_repository, tmp_path, token="s3cret", protect_inference=True)
    try:
        for url in (server.http_url, server.grpc_url):
            with Client(url, retries=0) as anonymous:
                for call in (
                    lambda c: c.statistics("strict"),
                    lambda c: c.unload("strict"),
                    lambda c: c.infer("strict", X),
                ):
                    with pytest.raises(Unauthorized, match="restricted, expecting header"):
                        call(anonymous)
            with Client(url, token="s3cret") as allowed:
                assert allowed.statistics("strict")["model_stats"][0]["name"] == "strict"
                np.testing.assert_array_equal(allowed.infer("strict", X)["y"], X["x"] * 2)
            with Client(url, token="wrong", retries=0) as wrong, pytest.raises(Unauthorized):
                wrong.statistics("strict")
    finally:
        server.stop()


def test_explicit_model_control(small_repository: Path, tmp_path: Path) -> None:
    server = start(small_repository, tmp_path, model_control="explicit", models=("strict",))
    try:
        with Client(server.grpc_url, retries=0) as client:
            assert client.is_model_ready("strict")
            assert not client.is_model_ready("slow_echo")
            client.load("slow_echo")
            assert client.is_model_ready("slow_echo")
            assert client.infer("slow_echo", X)["y"].shape == (1, 4)
            client.unload("strict")
            assert not client.is_model_ready("strict")
            with pytest.raises(ClientError, match="strict"):
                client.infer("strict", X)
    finally:
        server.stop()


def test_clean_shutdown_finishes_requests_in_flight(small_repository: Path, tmp_path: Path) -> None:
    server = start(small_repository, tmp_path)
    results: list[object] = []
    lock = threading.Lock()

    def send(url: str, i: int) -> None:
        with Client(url, retries=0, timeout_s=20) as client:
            client.model("slow_echo")  # config fetched before the stop begins
            barrier.wait()
            try:
                value = client.infer("slow_echo", {"x": np.full((1, 4), i, np.float32)})["y"][0, 0]
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                value = exc
            with lock:
                results.append((i, value))

    urls = [server.http_url, server.grpc_url] * 2
    barrier = threading.Barrier(len(urls) + 1)
    threads = [threading.Thread(target=send, args=(u, i)) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    barrier.wait()
    time.sleep(0.4)  # requests are now inside the 1 s stage
    code = server.stop()
    for t in threads:
        t.join(30)
    assert sorted(results) == [(i, float(i)) for i in range(len(urls))]  # none lost
    assert code == 0


def test_supervisor_restarts_a_crashed_server(small_repository: Path, tmp_path: Path) -> None:
    server = start(small_repository, tmp_path)
    try:
        first_pid = server.pid
        # Triton 2.51 aborts (std::bad_alloc) on a JSON request declaring a huge shape.
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [64, 1000000000],
                        "datatype": "FP32",
                        "data": list(range(16)),
                    }
                ]
            }
        ).encode()
        request = urllib.request.Request(f"{server.http_url}/v2/models/strict/infer", data=body)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(request, timeout=10)
        deadline = time.monotonic() + 20
        while server.pid == first_pid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.pid != first_pid, "the supervisor did not restart tritonserver"
        server.wait_ready(30)
        assert server.restarts == 1
        assert server.last_crash is not None and "bad_alloc" in server.last_crash
        with Client(server.grpc_url) as client:
            np.testing.assert_array_equal(client.infer("strict", X)["y"], X["x"] * 2)
    finally:
        server.stop()


def test_load_failure_quotes_the_server_log(small_repository: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(small_repository, broken)
    (broken / "strict" / "1" / "test_stages.py").write_text("def strict(:\n")
    with pytest.raises(ServerError) as info:
        start(broken, tmp_path)
    message = str(info.value)
    assert "tritonserver exited with code" in message
    assert "strict" in message and "SyntaxError" in message
