"""One sync Client shared by 8 threads, on both protocols: every answer right, and every
timeout fires (tritonclient's HTTP client cannot cross threads; the Client gives each its own)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from tritonpipe.client import Client
from tritonpipe.errors import RequestTimeout, Unavailable

THREADS = 8


def _run(work: Callable[[int], object]) -> list[object]:
    """``work(i)`` on 8 threads at once; its result or exception per thread, in order."""
    results: list[object] = [None] * THREADS
    barrier = threading.Barrier(THREADS)

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    assert not hung, f"threads {hung} never returned"
    return results


def test_one_client_shared_by_8_threads_answers_right(url: str) -> None:
    with Client(url, retries=0, timeout_s=20) as client:

        def work(i: int) -> list[float]:
            values = []
            for j in range(5):
                x = np.full((1, 4), i * 10 + j, np.float32)
                assert client.is_ready() and client.is_model_ready("strict")
                values.append(float(client.infer("strict", {"x": x})["y"][0, 0]))
            return values

        results = _run(work)
    assert results == [[2.0 * (i * 10 + j) for j in range(5)] for i in range(THREADS)]


def test_timeouts_fire_on_every_thread(url: str) -> None:
    x = {"x": np.ones((1, 4), np.float32)}  # slow_echo sleeps 1 s
    with Client(url, retries=0, timeout_s=0.4) as client:
        client.model("slow_echo")

        def work(i: int) -> float:
            started = time.perf_counter()
            try:
                client.infer("slow_echo", x)
            except RequestTimeout:
                return time.perf_counter() - started
            raise AssertionError("no timeout")

        results = _run(work)
    assert all(isinstance(r, float) and r < 2.0 for r in results), results


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_every_call_times_out_against_a_server_that_never_answers(scheme: str) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        with Client(f"{scheme}://127.0.0.1:{port}", retries=0, timeout_s=0.5) as client:
            calls = {
                "is_ready": client.is_ready,
                "is_model_ready": lambda: client.is_model_ready("m"),
                "model": lambda: client.model("m"),
                "statistics": client.statistics,
            }
            for name, call in calls.items():
                results = _run(lambda _i, call=call: _outcome(call))
                assert all(r[0] in (False, "timeout") for r in results), (name, results)
                assert all(r[1] < 2.0 for r in results), (name, results)  # timeout_s held


def _outcome(call: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    try:
        value = call()
    except (RequestTimeout, Unavailable):
        value = "timeout"
    return value, time.perf_counter() - started
