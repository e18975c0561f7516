"""The load generator produces the load it is asked for, seen from the server: N requests in
flight (Little's law on Triton's own statistics, with a 20 ms one-instance model), a request
rate followed (constant and Poisson), and -b requests of that many rows."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.counted import wait_for
from tritonpipe.client import Client
from tritonpipe.perf.generator import LevelResult, ProfileOptions, Profiler
from tritonpipe.perf.server_stats import snapshot
from tritonpipe.server import TritonServer


def _profile(server: TritonServer, **options: object) -> list[LevelResult]:
    defaults: dict[str, object] = {
        "model": "sleepy",
        "url": server.http_url,
        "measurement_interval_ms": 500,
        "max_trials": 3,
        "stability_percentage": 100,
        "input_data": "zero",
    }
    return asyncio.run(Profiler(ProfileOptions(**{**defaults, **options})).run())  # type: ignore[arg-type]


def test_concurrency_holds_n_requests_in_flight_at_the_server(server: TritonServer) -> None:
    levels = _profile(server, loads=(1, 3))
    for load, level in zip((1, 3), levels, strict=True):
        row = level.row
        server_s = (
            row.server_queue_us + row.server_input_us + row.server_infer_us + row.server_output_us
        ) / 1e6
        in_flight = row.throughput * server_s  # Little's law: arrivals/s x seconds at the server
        # Below N only by the short time each request spends in the client between answers;
        # above it only by requests straddling the window edges.
        assert load - 0.6 < in_flight <= load + 0.3, (load, in_flight, row)
    # One instance, 20 ms each: the server is the bottleneck, so 3 in flight queue ~2 x 20 ms.
    assert levels[1].row.server_queue_us > 25_000 > levels[0].row.server_queue_us


@pytest.mark.parametrize(("distribution", "tolerance"), [("constant", 0.15), ("poisson", 0.3)])
def test_request_rate_is_followed(
    server: TritonServer, distribution: str, tolerance: float
) -> None:
    [level] = _profile(
        server,
        model="digits_onnx",
        mode="request_rate",
        loads=(40,),
        distribution=distribution,
        measurement_interval_ms=1000,
    )
    assert level.errors == 0
    assert level.row.throughput == pytest.approx(40, rel=tolerance)


def test_batch_size_sends_that_many_rows_per_request(server: TritonServer) -> None:
    with Client(server.http_url) as client:
        before = snapshot(client.statistics("digits_onnx"))["digits_onnx"]
        [level] = _profile(server, model="digits_onnx", batch_size=4, measurement_interval_ms=200)
        after = wait_for(
            lambda: snapshot(client.statistics("digits_onnx"))["digits_onnx"],
            lambda a: a.success - before.success >= level.requests,
        )
    requests = after.success - before.success
    assert requests >= level.requests > 0
    assert after.inferences - before.inferences == 4 * requests  # 4 rows in each request
    # Throughput counts inferences (rows), as perf_analyzer's does.
    assert level.row.throughput > 0
