"""What Triton counted for a model: it counts a request after the answer has left, so a read
right after the answer may not have it yet; these wait for the count to get there."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import tritonclient.http as triton_http

T = TypeVar("T")


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 10.0) -> T:
    """``read()`` until ``done`` holds for it; the last read when ``timeout_s`` runs out (the
    caller's assertion then says what it got)."""
    deadline = time.monotonic() + timeout_s
    while not done(value := read()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return value


def success(client: triton_http.InferenceServerClient, model: str) -> tuple[int, int]:
    """The model's successful requests: (count, nanoseconds)."""
    (stats,) = client.get_inference_statistics(model)["model_stats"]
    counted = stats["inference_stats"]["success"]
    return int(counted.get("count", 0)), int(counted.get("ns", 0))


def server_ms(
    client: triton_http.InferenceServerClient, model: str, send: Callable[[], object]
) -> float:
    """The server's own time for the one request ``send`` makes (its ``success`` time)."""
    count, ns = success(client, model)
    send()
    after = wait_for(lambda: success(client, model), lambda s: s[0] > count)
    assert after[0] == count + 1, f"{model}: {after[0] - count} requests counted, expected 1"
    return (after[1] - ns) / 1e6
