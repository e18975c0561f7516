"""Measuring a service profile on a running tritonserver (explicit model control): the model is
reloaded with one instance and no queue delay while it is measured, then put back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from tritonpipe.capacity.service import (
    STABILITY,
    Level,
    Profile,
    Window,
    batch_times,
    device_share,
    measure_profile,
    served_config,
    window_of,
)

if TYPE_CHECKING:
    from tritonpipe.perf.generator import LevelResult


POISSON_REQUESTS = 4000  # at least, over a Poisson level's three windows: a p99 of fewer swings


def poisson_level(
    model: str,
    url: str,
    protocol: str,
    rate: float,
    window_ms: int,
    input_data: str = "random",
    requests: int = POISSON_REQUESTS,
    progress: Callable[[str], None] = lambda _: None,
) -> LevelResult:
    """Poisson arrivals offered at ``rate`` for three windows, each at least ``window_ms`` and
    long enough for the three to hold ``requests`` requests."""
    from tritonpipe.perf.generator import ProfileOptions, Profiler

    options = ProfileOptions(
        model=model,
        url=url,
        protocol=protocol,
        mode="request_rate",
        loads=(round(rate, 1),),
        distribution="poisson",
        measurement_interval_ms=max(window_ms, round(requests / 3 / rate * 1000)),
        max_trials=3,
        stability_percentage=100.0,
        input_data=input_data,
    )
    return asyncio.run(Profiler(options).run(progress))[0]


def concurrency_level(
    model: str,
    url: str,
    protocol: str,
    concurrency: int,
    window_ms: int,
    input_data: str = "random",
    trials: int = 3,
    stability_percentage: float = 100.0,
) -> LevelResult:
    """Requests of one row at ``concurrency``: windows of ``window_ms`` until the last three agree
    within ``stability_percentage`` (at most ``trials``)."""
    from tritonpipe.perf.generator import ProfileOptions, Profiler

    options = ProfileOptions(
        model=model,
        url=url,
        protocol=protocol,
        loads=(concurrency,),
        measurement_interval_ms=window_ms,
        max_trials=trials,
        stability_percentage=stability_percentage,
        input_data=input_data,
    )
    return asyncio.run(Profiler(options).run())[0]


def server_level(
    model: str,
    url: str,
    protocol: str,
    stats_address: str,
    concurrency: int,
    window_ms: int,
    input_data: str = "random",
) -> Level:
    """Requests of one row at ``concurrency`` for three windows: the executions per batch size
    (Triton's statistics before and after) and each request's overhead."""
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(stats_address)
    try:
        before = batch_times(dict(client.get_inference_statistics(model)), model)
        result = concurrency_level(model, url, protocol, concurrency, window_ms, input_data)
        after = batch_times(dict(client.get_inference_statistics(model)), model)
    finally:
        client.close()
    row = result.row
    server = (row.server_queue_us + row.server_input_us + row.server_infer_us) / 1e6
    server += row.server_output_us / 1e6
    executions = {
        b: (after[b][0] - before.get(b, (0, 0))[0], after[b][1] - before.get(b, (0, 0))[1])
        for b in after
    }
    overhead = tuple(max(0.0, v - server) for v in result.latencies_s)
    counted = result.server
    rate = rows = 0.0
    if counted is not None and counted.executions > 0 and result.seconds > 0:
        rate = counted.executions / result.seconds
        rows = counted.inferences / counted.executions
    return Level(executions, row.throughput, overhead, rate, rows)


def server_measure(
    model: str,
    url: str,
    protocol: str,
    stats_address: str,
    max_batch_size: int,
    window_ms: int,
    input_data: str = "random",
) -> Callable[[], Window]:
    """One window on a live server: concurrency 1, 2, 4, ... up to twice the largest batch;
    execution times from Triton's per-batch-size statistics, overheads from the client's
    latencies less the server's time."""

    def measure() -> Window:
        levels = []
        concurrency = 1
        while concurrency <= 2 * max_batch_size:
            levels.append(
                server_level(
                    model, url, protocol, stats_address, concurrency, window_ms, input_data
                )
            )
            concurrency *= 2
        return window_of(levels, max_batch_size)

    return measure


def profile_server(
    model: str,
    url: str,
    protocol: str,
    http_address: str,
    window_ms: int = 500,
    input_data: str = "random",
    devices: int = 1,
    progress: Callable[[str], None] = lambda _: None,
    max_batch_size: int | None = None,
    stability: float = STABILITY,
    slo_s: float | None = None,
) -> Profile:
    """The profile of ``model`` as served now (its config is what the simulation models);
    ``max_batch_size`` profiles batches up to that size instead of the served largest; with
    ``slo_s``, windows that differ by less than service.SLO_FLOOR of it are not refused."""
    from tritonpipe.capacity.candidates import ServerConfigs

    configs = ServerConfigs(http_address)
    try:
        config = served_config(configs.config(model), devices)
        progress(f"profiling '{model}' (served as {config.describe()}) with one instance ...")
        largest = max_batch_size or config.max_batch_size
        knobs = {"count": 1, "max_queue_delay_us": 0, "max_batch_size": largest}
        configs.apply(model, {model: knobs})
        measure = server_measure(model, url, protocol, http_address, largest, window_ms, input_data)
        profile = measure_profile(
            measure, config, model, progress=progress, stability=stability, slo_s=slo_s
        )
        if config.count > config.devices:
            # The instances share the device: how much of an execution holds it.
            configs.apply(model, {model: {**knobs, "count": config.count}})
            level = server_level(
                model,
                url,
                protocol,
                http_address,
                2 * largest * config.count,
                window_ms,
                input_data,
            )
            share = device_share(profile, level)
            progress(
                f"  {config.count} instances at saturation: {share:.0%} of an execution holds "
                "the device"
            )
            profile = replace(profile, device_share=share)
    finally:
        if configs.originals:
            configs.restore()
        configs.close()
    # The restore reloaded the model: Triton unloads the old instances in the background and the
    # new ones run their first executions. Whatever measures the model next (a plan's validation,
    # the benchmark) would see that as a stall (k3 at 50% load: p99 102 ms against 28 ms on the
    # same rate a minute later), so load it until it settles.
    # The saturation first: an overload can leave its own transient, which the settling absorbs.
    profile = with_ceiling(profile, url, protocol, window_ms, input_data, progress)
    settle(model, url, protocol, 2 * config.max_batch_size * config.count, window_ms, input_data)
    progress("  served config restored and warmed up")
    return profile


CEILING_SHORT = 0.8  # a saturation carrying less than this share of the simulated one: a ceiling
CEILING_NEAR = 1.1  # then offered again at this share of what it carried,
CEILING_ALL = 0.97  # and again while it carries this share of the offer,
CEILING_TRIES = 4  # at most this many times


def with_ceiling(
    profile: Profile,
    url: str,
    protocol: str,
    window_ms: int,
    input_data: str,
    progress: Callable[[str], None] = lambda _: None,
) -> Profile:
    """Offer the served config Poisson arrivals at its simulated saturation (full batches on
    every execution slot, from the profile's compute times) and keep what it carried as the
    profile's ceiling where that falls short of it by more than CEILING_SHORT: on a CPU-bound
    replica (the client, the gRPC front end and the backend's per-request work on the same
    cores) the compute per batch size says nothing of that limit."""
    from tritonpipe.capacity.predict import Predictor

    offered = Predictor(profile).saturation()
    carried = saturation_rate(profile.model, url, protocol, offered, window_ms, input_data)
    short = carried < CEILING_SHORT * offered
    progress(
        f"  saturation: {carried:.0f}/s carried of {offered:.0f}/s offered"
        + (" (short: the ceiling of the plan)" if short else "")
    )
    if not short:
        return profile
    # Far above the ceiling the client itself piles up requests (a task each) and carries less
    # than it does just above it: offer a little more than was carried while all of it is.
    for _ in range(CEILING_TRIES):
        near = CEILING_NEAR * carried
        again = saturation_rate(profile.model, url, protocol, near, window_ms, input_data)
        progress(f"  saturation: {again:.0f}/s carried of {near:.0f}/s offered")
        carried = max(carried, min(again, near))
        if again < CEILING_ALL * near:
            break
    warning = (
        f"the served config carried {carried:.0f}/s of Poisson arrivals offered at its "
        f"simulated saturation, {offered:.0f}/s: the CPU outside the model's compute (client, "
        "front end, the backend's per-request work) caps the replica there, and the plan keeps "
        "under it"
    )
    return replace(profile, ceiling_per_s=carried, warnings=(*profile.warnings, warning))


def saturation_rate(
    model: str, url: str, protocol: str, rate: float, window_ms: int, input_data: str
) -> float:
    """Requests/s carried under Poisson arrivals offered at ``rate`` (three windows)."""
    return poisson_level(model, url, protocol, rate, window_ms, input_data, 0).row.throughput


SETTLE_TRIALS = 6  # windows at most
SETTLE_STABILITY = 10.0  # percent: the last three windows' throughput and latency agree


def settle(
    model: str, url: str, protocol: str, concurrency: int, window_ms: int, input_data: str
) -> None:
    """Load the model at ``concurrency`` until three windows in a row agree within
    SETTLE_STABILITY percent (at most SETTLE_TRIALS windows); the measurements are dropped."""
    concurrency_level(
        model, url, protocol, concurrency, window_ms, input_data, SETTLE_TRIALS, SETTLE_STABILITY
    )
