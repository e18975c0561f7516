"""Retries as ClientOptions documents them: only Unavailable answers (connection refused, 429,
502, 503, gRPC UNAVAILABLE / RESOURCE_EXHAUSTED) are retried, ``retries`` times, waiting
``backoff_s`` doubled each time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tests.integration.wiretap import Wiretap
from tritonpipe.client import AsyncClient, Client
from tritonpipe.errors import ClientError, Unavailable
from tritonpipe.server import TritonServer

CONFIG = {"name": "m", "max_batch_size": 0, "input": [], "output": []}


class Scripted(ThreadingHTTPServer):
    """Answers each request with the next status in ``statuses`` (the last one repeats) and
    records when each arrived: a stand-in for a server that is overloaded, then recovers."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.arrivals: list[float] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        self.server.arrivals.append(time.perf_counter())
        n = len(self.server.arrivals) - 1
        status = self.server.statuses[min(n, len(self.server.statuses) - 1)]
        body = json.dumps(CONFIG if status == 200 else {"error": f"status {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def scripted(statuses: list[int]) -> Iterator[Scripted]:
    httpd = Scripted(statuses)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _gaps(arrivals: list[float]) -> list[float]:
    return [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]


@pytest.mark.parametrize("status", [503, 429, 502])
def test_retries_exactly_n_times_with_doubling_backoff(status: int) -> None:
    for httpd in scripted([status]):
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with Client(url, retries=3, backoff_s=0.05) as client, pytest.raises(Unavailable):
            client.model("m")
        assert len(httpd.arrivals) == 4  # the first try and 3 retries
        for gap, wait in zip(_gaps(httpd.arrivals), (0.05, 0.1, 0.2), strict=True):
            assert wait <= gap < wait + 0.15


async def test_async_client_retries_then_succeeds() -> None:
    for httpd in scripted([429, 503, 200]):
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        async with AsyncClient(url, retries=3, backoff_s=0.05) as client:
            assert (await client.model("m")).name == "m"
        assert len(httpd.arrivals) == 3
        for gap, wait in zip(_gaps(httpd.arrivals), (0.05, 0.1), strict=True):
            assert wait <= gap < wait + 0.15


@pytest.mark.parametrize("status", [400, 404, 500])
def test_other_errors_are_not_retried(status: int) -> None:
    for httpd in scripted([status, 200]):
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with Client(url, retries=3, backoff_s=0.05) as client, pytest.raises(ClientError) as info:
            client.model("m")
        assert not isinstance(info.value, Unavailable)
        assert len(httpd.arrivals) == 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_invalid_request_to_the_real_server_is_sent_once(
    server: TritonServer, protocol: str
) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    with Wiretap(int(url.rsplit(":", 1)[1])) as tap:
        with Client(f"{protocol}://127.0.0.1:{tap.port}", retries=3, backoff_s=0.05) as client:
            client.model("strict")  # the config, fetched before the request
            before = len(tap.sent())
            with pytest.raises(ClientError, match="negative values") as info:
                client.infer("strict", {"x": -np.ones((1, 4), np.float32)})
        sent = tap.sent()[before:]
    assert not isinstance(info.value, Unavailable)
    marker = b"/v2/models/strict/infer" if protocol == "http" else b"ModelInfer"
    assert sent.count(marker) == 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_retry_then_succeed_when_the_server_comes_back(server: TritonServer, protocol: str) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    started = time.perf_counter()
    # Nothing listens on the port for 0.3 s; the attempts at 0 and 0.2 s are refused.
    with (
        Wiretap(int(url.rsplit(":", 1)[1]), delay_s=0.3) as tap,
        Client(f"{protocol}://127.0.0.1:{tap.port}", retries=3, backoff_s=0.2) as client,
    ):
        assert client.model("digits_onnx").max_batch_size == 64
    assert time.perf_counter() - started >= 0.6  # waited 0.2 + 0.4


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_overloaded_model_answers_unavailable_and_is_retried(
    server: TritonServer, protocol: str
) -> None:
    """'overloaded' queues at most one request (max_queue_size 1) and takes 20 ms each: six at
    once overflow it (HTTP 429, gRPC UNAVAILABLE). Without retries some fail Unavailable; with
    retries all succeed."""
    x = np.ones((1, 4), np.float32)
    url = server.http_url if protocol == "http" else server.grpc_url

    def burst(retries: int) -> list[str]:
        with Client(url, retries=retries, backoff_s=0.05) as client:
            client.model("overloaded")

            def one(_: int) -> str:
                try:
                    client.infer("overloaded", {"x": x})
                except Unavailable:
                    return "unavailable"
                return "ok"

            with ThreadPoolExecutor(6) as pool:
                return list(pool.map(one, range(6)))

    assert "unavailable" in burst(retries=0)
    assert burst(retries=6) == ["ok"] * 6
