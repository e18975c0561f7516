"""The load generator's own logic with only the server replaced (tritonclient's asyncio client
swapped for an in-memory one that answers after a set time): the number of requests in flight,
the request-rate schedule (constant and Poisson), ensembles' composing models, shared-memory
placement and the errors a user sees. tests/integration/test_generator_load.py holds the same
properties against the real tritonserver."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http.aio as http_aio

from tritonpipe.errors import PerfError
from tritonpipe.perf.generator import LevelResult, ProfileOptions, Profiler

X = {"name": "x", "data_type": "TYPE_FP32", "dims": [4]}
Y = {"name": "y", "data_type": "TYPE_FP32", "dims": [4]}
CONFIGS: dict[str, dict[str, Any]] = {
    "m": {"max_batch_size": 8, "input": [X], "output": [Y]},
    "flat": {"max_batch_size": 0, "input": [X], "output": [Y]},
    "one": {"max_batch_size": 1, "input": [X], "output": [Y]},
    "a": {"max_batch_size": 8, "input": [X], "output": [Y]},
    "b": {"max_batch_size": 8, "input": [X], "output": [Y]},
    "inner": {
        "platform": "ensemble",
        "max_batch_size": 8,
        "input": [X],
        "output": [Y],
        "ensemble_scheduling": {"step": [{"model_name": "b"}]},
    },
    "ens": {
        "platform": "ensemble",
        "max_batch_size": 8,
        "input": [X],
        "output": [Y],
        "ensemble_scheduling": {"step": [{"model_name": "a"}, {"model_name": "inner"}]},
    },
}
WINDOW = 0.05  # seconds per measurement window: short, the tests run once per mutant
# Nanoseconds each model spends per request in each stage (queue, input, infer, output).
COSTS = {"a": (1000, 2000, 3000, 4000), "b": (10000, 20000, 30000, 40000)}
COSTS["m"] = COSTS["flat"] = COSTS["one"] = (5000, 0, 7000, 0)


class Server:
    """What the fake clients share: requests in flight, arrival times, statistics."""

    def __init__(
        self, service_s: float, fail: str | None = None, grpc: bool = False, refuse: bool = False
    ) -> None:
        self.service_s = service_s
        self.fail = fail
        self.refuse = refuse  # raise from infer() itself, before anything is awaited
        self.grpc = grpc
        self.in_flight = 0
        self.most = 0
        self.arrivals: list[float] = []
        self.counts: dict[str, int] = dict.fromkeys(COSTS, 0)
        self.calls: list[tuple[str, Any]] = []
        self.closed = 0
        self.fail_unregister = False
        self.inputs: list[Any] = []  # the last request's (name, datatype, shape, wire form)
        self.payloads: list[Any] = []  # and its binary data


class Answer:
    def __init__(self, rows: int) -> None:
        self.rows = rows

    def as_numpy(self, name: str) -> np.ndarray:
        assert name == "y"
        return np.zeros((self.rows, 4), np.float32)


def _statistics(counts: dict[str, int]) -> dict[str, Any]:
    """Triton's statistics answer after ``counts`` requests per model, each costing COSTS."""
    stages = ("queue", "compute_input", "compute_infer", "compute_output")
    return {
        "model_stats": [
            {
                "name": model,
                "inference_count": n,
                "execution_count": n,
                "inference_stats": {
                    "success": {"count": n},
                    **{s: {"ns": n * ns} for s, ns in zip(stages, COSTS[model], strict=True)},
                },
            }
            for model, n in counts.items()
        ]
    }


class Client:
    """tritonclient's asyncio client, answered from ``server``."""

    def __init__(self, server: Server, address: str) -> None:
        self.server = server
        self.server.calls.append(("address", address))

    async def get_model_config(self, name: str, **kwargs: Any) -> dict[str, Any]:
        self.server.calls.append(("config", kwargs))
        if name not in CONFIGS:
            raise RuntimeError(f"unknown model '{name}'")
        return {"config": CONFIGS[name]} if self.server.grpc else CONFIGS[name]

    async def get_inference_statistics(self, name: str, **kwargs: Any) -> dict[str, Any]:
        self.server.calls.append(("statistics", (name, kwargs)))
        return _statistics(self.server.counts)

    def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> Any:
        if self.server.refuse:
            raise ConnectionRefusedError("refused at once")
        return self._infer(model, inputs, **kwargs)

    async def _infer(self, model: str, inputs: list[Any], **kwargs: Any) -> Answer:
        self.server.calls.append(("infer", kwargs))
        self.server.inputs = [(t.name(), t.datatype(), t.shape(), t._get_tensor()) for t in inputs]
        if not self.server.grpc:
            self.server.payloads = [t._get_binary_data() for t in inputs]
        self.server.arrivals.append(time.perf_counter())
        self.server.in_flight += 1
        self.server.most = max(self.server.most, self.server.in_flight)
        try:
            await asyncio.sleep(self.server.service_s)
        finally:
            self.server.in_flight -= 1
        if self.server.fail:
            raise RuntimeError(self.server.fail)
        for name in ("a", "b") if model == "ens" else (model,):
            self.server.counts[name] += 1
        return Answer(inputs[0].shape()[0] if len(inputs[0].shape()) == 2 else 1)

    async def register_system_shared_memory(self, *args: Any, **kwargs: Any) -> None:
        self.server.calls.append(("register", args))
        self.server.calls.append(("register_headers", kwargs))

    async def unregister_system_shared_memory(self, name: str, **kwargs: Any) -> None:
        self.server.calls.append(("unregister", name))
        self.server.calls.append(("unregister_headers", kwargs))
        if self.server.fail_unregister:
            raise ConnectionResetError("server gone")

    async def close(self) -> None:
        self.server.closed += 1


def profile(
    server: Server, seen: list[Profiler] | None = None, **options: Any
) -> tuple[list[LevelResult], list[str]]:
    grpc = server.grpc
    defaults: dict[str, Any] = {
        "model": "m",
        "url": "grpc://127.0.0.1:1" if grpc else "http://127.0.0.1:1",
        "transport": "tritonclient",
        "measurement_interval_ms": int(WINDOW * 1000),
        "max_trials": 3,
    }
    profiler = Profiler(ProfileOptions(**{**defaults, **options}))
    real = grpc_aio if grpc else http_aio
    profiler.mod = SimpleNamespace(  # type: ignore[assignment]
        InferenceServerClient=functools.partial(Client, server), InferInput=real.InferInput
    )
    if seen is not None:
        seen.append(profiler)
    lines: list[str] = []
    return asyncio.run(profiler.run(lines.append)), lines


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_keeps_exactly_n_requests_in_flight(concurrency: int) -> None:
    server = Server(service_s=0.01)
    (result,), lines = profile(server, loads=(concurrency,))
    assert server.most == concurrency
    # Requests follow one another without a gap: ~10 ms each, N at a time, over three windows.
    assert result.requests >= 0.5 * concurrency * 3 * WINDOW / 0.01
    assert result.row.load == concurrency and result.errors == 0 and result.first_error is None
    assert lines[0].startswith(f"  concurrency {concurrency}: window 1: ")
    assert server.closed == 1


@pytest.mark.parametrize("distribution", ["constant", "poisson"])
def test_request_rate_follows_its_schedule(distribution: str) -> None:
    rate = 50
    server = Server(service_s=0.001)
    (result,), lines = profile(
        server,
        mode="request_rate",
        loads=(rate,),
        distribution=distribution,
        measurement_interval_ms=200,
    )
    assert lines[0].startswith(f"  request rate {rate}: window 1: ")
    sent = np.array(server.arrivals) - server.arrivals[0]
    gaps = np.diff(sent)
    if distribution == "constant":
        assert abs(float(np.median(gaps)) - 1 / rate) < 0.005
        assert np.percentile(gaps, 25) > 0.5 / rate  # no bursts
    else:
        # The schedule is seeded: request k goes at the sum of the first k + 1 draws.
        draws = np.cumsum(np.random.default_rng(0).exponential(1 / rate, len(sent)))
        expected = draws - draws[0]
        assert float(np.median(np.abs(sent - expected))) < 0.01
        assert float(np.std(gaps) / np.mean(gaps)) > 0.5  # exponential gaps vary; constant don't
    # About rate x 0.6 s were sent over three windows, and the row counts them per second.
    assert 0.7 * rate * 0.6 <= len(sent) <= 1.3 * rate * 0.6 + 2
    assert 0.7 * rate <= result.row.throughput <= 1.3 * rate


def test_levels_run_in_order_and_batch_size_multiplies_throughput() -> None:
    server = Server(service_s=0.005)
    results, _ = profile(server, loads=(1, 2), batch_size=4)
    assert [r.row.load for r in results] == [1, 2]
    assert server.most == 2
    for r in results:  # each request carries 4 rows: 4 inferences per request per second
        assert r.row.throughput == pytest.approx(4 * r.requests / (3 * WINDOW), rel=0.35)
    assert {kw["headers"]["Accept-Encoding"] for _, kw in server.calls if _ == "infer"} == {
        "identity"
    }


def test_ensemble_server_columns_sum_its_composing_models() -> None:
    server = Server(service_s=0.002)
    (result,), _ = profile(server, model="ens")
    assert list(result.composing) == ["a", "b"]  # "inner" is an ensemble: its step counts
    a, b = result.composing["a"], result.composing["b"]
    assert (a.server_queue_us, a.server_input_us, a.server_infer_us, a.server_output_us) == (
        1,
        2,
        3,
        4,
    )
    assert (b.server_queue_us, b.server_infer_us) == (10, 30)
    row = result.row
    assert (row.server_queue_us, row.server_input_us, row.server_infer_us) == (11, 22, 33)
    assert row.server_output_us == 44
    for r in (a, b):
        assert r.load == 1 and r.throughput == round(r.throughput, 3)
        assert r.client_send_us == r.network_us == r.client_recv_us == 0
        assert r.p50_us == r.p90_us == r.p95_us == r.p99_us == 0
    # Each composing model's throughput is its own count over the same seconds.
    assert a.throughput == b.throughput == pytest.approx(result.requests / (3 * WINDOW), rel=0.35)


def test_single_model_server_columns() -> None:
    server = Server(service_s=0.002)
    (result,), _ = profile(server, model="m")
    assert result.composing == {}
    assert (result.row.server_queue_us, result.row.server_infer_us) == (5, 7)
    assert result.row.p50_us >= 2000


def test_grpc_reads_wrapped_configs_and_sets_a_timeout() -> None:
    server = Server(service_s=0.002, grpc=True)
    (result,), _ = profile(server, model="ens", token="t0k", timeout_s=7)
    assert list(result.composing) == ["a", "b"]
    infer = [kw for what, kw in server.calls if what == "infer"]
    assert infer[0]["client_timeout"] == 7
    configs = [kw for what, kw in server.calls if what == "config"]
    assert configs[0] == {
        "headers": {"triton-grpc-protocol-tritonpipe-token": "t0k"},
        "as_json": True,
    }
    assert ("address", "127.0.0.1:1") in server.calls


def test_http_token_header() -> None:
    server = Server(service_s=0.002)
    profile(server, token="t0k")
    configs = [kw for what, kw in server.calls if what == "config"]
    assert configs[0] == {"headers": {"tritonpipe-token": "t0k"}}
    infer = [kw for what, kw in server.calls if what == "infer"]
    assert infer[0] == {"headers": {"tritonpipe-token": "t0k", "Accept-Encoding": "identity"}}
    statistics = [args for what, args in server.calls if what == "statistics"]
    assert statistics[0] == ("", {"headers": {"tritonpipe-token": "t0k"}})


def test_every_request_failing_is_an_error_naming_the_first() -> None:
    with pytest.raises(
        PerfError, match="^model 'm' at concurrency 2: every request failed; first error: boom$"
    ):
        profile(Server(service_s=0.002, fail="boom"), loads=(2,))


@pytest.mark.parametrize("mode", ["concurrency", "request_rate"])
def test_requests_failing_at_once_do_not_starve_the_windows(mode: str) -> None:
    with pytest.raises(PerfError, match="every request failed; first error: refused at once$"):
        profile(
            Server(service_s=0, refuse=True),
            mode=mode,
            loads=(4 if mode == "concurrency" else 100,),
        )


def test_slow_requests_time_out_and_count_as_errors() -> None:
    with pytest.raises(PerfError, match="every request failed; first error: TimeoutError"):
        profile(Server(service_s=0.5), timeout_s=0.02, measurement_interval_ms=20)


def test_unstable_level_says_so() -> None:
    server = Server(service_s=0.002)
    (result,), lines = profile(server, stability_percentage=0, max_trials=4)
    assert not result.stable
    assert lines[-1] == "  concurrency 1: not stable within 4 windows (+-0%); reporting the last 3"
    assert len([line for line in lines if ": window " in line]) == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 9}, "^-b 9 is larger than model 'm' max_batch_size 8$"),
        ({"model": "flat", "batch_size": 2}, "^model 'flat' does not batch; use -b 1$"),
        ({"model": "nope"}, r"^model 'nope': cannot read its config \(unknown model 'nope'\)$"),
    ],
)
def test_refused_before_any_load(options: dict[str, Any], message: str) -> None:
    server = Server(service_s=0.001)
    with pytest.raises(PerfError, match=message):
        profile(server, **options)
    assert server.arrivals == [] and server.closed == 1


def test_batch_size_equal_to_max_and_unbatched_model() -> None:
    server = Server(service_s=0.002)
    (result,), _ = profile(server, batch_size=8)
    assert result.requests > 0
    (flat,), _ = profile(Server(service_s=0.002), model="flat")
    assert flat.requests > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "rate"}, "^mode 'rate': concurrency or request_rate$"),
        ({"distribution": "uniform"}, "^--request-distribution 'uniform': constant or poisson$"),
        ({"transport": "curl"}, "^--transport 'curl': tritonclient or raw$"),
        ({"batch_size": 0}, "^batch size >= 1, max trials >= 3 and measurement interval >= 10 ms$"),
        ({"max_trials": 2}, "batch size >= 1, max trials >= 3"),
        ({"measurement_interval_ms": 9}, "measurement interval >= 10 ms"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PerfError, match=message):
        Profiler(ProfileOptions(model="m", url="http://127.0.0.1:1", **options))


def test_smallest_allowed_options() -> None:
    profiler = Profiler(
        ProfileOptions(model="m", url="h:1", batch_size=1, max_trials=3, measurement_interval_ms=10)
    )
    assert profiler.endpoint.protocol == "http" and profiler.headers is None
    assert profiler.json == {} and profiler.infer_headers == {"Accept-Encoding": "identity"}


def test_shared_memory_regions_are_registered_once_and_unregistered() -> None:
    server = Server(service_s=0.002)
    (result,), _ = profile(server, shared_memory="system")
    registered = [args for what, args in server.calls if what == "register"]
    unregistered = [name for what, name in server.calls if what == "unregister"]
    assert len(registered) == 1  # one sample, one input: one region, reused by every request
    name, key, size = registered[0]
    assert name.startswith("tritonpipe_perf_") and size >= 4 * 4 and key.startswith("/")
    assert unregistered == [name] and result.requests > 2
    (tensor_name, datatype, shape, wire) = server.inputs[0]
    assert (tensor_name, datatype, shape) == ("x", "FP32", [1, 4])
    assert wire["parameters"]["shared_memory_region"] == name and "binary_data_size" not in str(
        wire
    )
    register_headers = [kw for what, kw in server.calls if what == "register_headers"]
    assert register_headers == [{"headers": None}]


def test_requests_carry_the_sample_inline_without_shared_memory() -> None:
    server = Server(service_s=0.002)
    profile(server, batch_size=2)
    (tensor_name, datatype, shape, _) = server.inputs[0]
    assert (tensor_name, datatype, shape) == ("x", "FP32", [2, 4])


def test_no_request_completing_is_an_error_too() -> None:
    # 1 request per second: the first is due after the three 50 ms windows have ended.
    with pytest.raises(
        PerfError,
        match="^model 'm' at request rate 1: every request failed; first error: no requests "
        "completed$",
    ):
        profile(Server(service_s=0.001), mode="request_rate", loads=(1,))


def test_each_window_reports_throughput_latency_and_errors() -> None:
    server = Server(service_s=0.004)
    _, lines = profile(server)
    windows = [
        re.fullmatch(
            r"  concurrency 1: window (\d): ([\d.]+) infer/s, latency (\d+) us, "
            r"(\d+) errors",
            line,
        )
        for line in lines
        if ": window " in line
    ]
    assert [int(m.group(1)) for m in windows if m] == [1, 2, 3]
    for m in windows:
        assert m is not None
        assert 4000 <= int(m.group(3)) < 40000 and m.group(4) == "0"
        assert 20 <= float(m.group(2)) <= 260  # one request at a time, 4 ms or more each


def test_shared_memory_with_a_token_names_regions_per_profiler_and_sizes_them() -> None:
    server = Server(service_s=0.002)
    seen: list[Profiler] = []
    profile(server, seen, shared_memory="system", token="t0k")
    ((name, _, _),) = [args for what, args in server.calls if what == "register"]
    assert name == f"tritonpipe_perf_{id(seen[0]):x}_0_x_16"  # profiler, sample, input, bytes
    headers = {"headers": {"tritonpipe-token": "t0k"}}
    assert [kw for what, kw in server.calls if what == "register_headers"] == [headers]
    assert [kw for what, kw in server.calls if what == "unregister_headers"] == [headers]
    wire = server.inputs[0][3]
    assert wire["parameters"]["shared_memory_byte_size"] == 16


def test_grpc_statistics_are_asked_as_json() -> None:
    server = Server(service_s=0.002, grpc=True)
    profile(server)
    statistics = [args for what, args in server.calls if what == "statistics"]
    assert statistics[0] == ("", {"headers": None, "as_json": True})


@pytest.mark.parametrize(("model", "shape"), [("flat", [4]), ("one", [1, 4]), ("m", [1, 4])])
def test_a_batch_dimension_only_for_models_that_batch(model: str, shape: list[int]) -> None:
    server = Server(service_s=0.002)
    profile(server, model=model)
    assert server.inputs[0][2] == shape


def test_tritonclient_transport_measures_no_send_and_a_short_receive() -> None:
    server = Server(service_s=0.002)
    (result,), _ = profile(server)
    assert result.row.client_send_us == 0  # tritonclient sends and waits in one call
    assert 0 <= result.row.client_recv_us < 1000  # reading one small output


def test_the_clients_are_tritonclients_asyncio_ones_for_the_protocol() -> None:
    http = Profiler(ProfileOptions(model="m", url="127.0.0.1:1"))
    assert http.mod is http_aio and http.endpoint.protocol == "http"
    grpc = Profiler(ProfileOptions(model="m", url="127.0.0.1:1", protocol="grpc"))
    assert grpc.mod is grpc_aio and grpc.endpoint.protocol == "grpc"
    assert grpc.json == {"as_json": True}


def test_an_unreachable_metrics_endpoint_is_said_once_and_not_scraped_again() -> None:
    server = Server(service_s=0.002)
    url = "http://127.0.0.1:1/metrics"
    (result,), lines = profile(server, metrics_url=url)
    said = [line for line in lines if "per-step" in line]
    assert len(said) == 1 and said[0].startswith(f"  no per-step times: metrics endpoint {url}: ")
    assert result.steps == []


def test_given_batches_are_sent_as_they_are() -> None:
    server = Server(service_s=0.002)
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    profile(server, batches=({"x": rows},), batch_size=3)
    (tensor_name, datatype, shape, wire) = server.inputs[0]
    assert (tensor_name, datatype, shape) == ("x", "FP32", [3, 4])
    assert wire["parameters"]["binary_data_size"] == 48
    assert server.payloads[0] == rows.tobytes()


def test_unregistering_is_best_effort_on_the_way_out() -> None:
    server = Server(service_s=0.002)
    server.fail_unregister = True
    (result,), _ = profile(server, shared_memory="system")
    assert result.requests > 0 and server.closed == 1
    assert [what for what, _ in server.calls].count("unregister") == 1
