"""Measuring a service profile on a running tritonserver (explicit model control): the model is
reloaded with one instance and no queue delay while it is measured, then put back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tritonpipe.capacity.service import (
    Level,
    Profile,
    Window,
    batch_times,
    measure_profile,
    served_config,
    window_of,
)


def server_measure(
    model: str,
    url: str,
    protocol: str,
    stats_address: str,
    max_batch_size: int,
    window_ms: int,
    input_data: str = "random",
) -> Callable[[], Window]:
    """One window on a live server: requests of one row at concurrency 1, 2, 4, ... up to twice
    the largest batch (three windows each); execution times from Triton's per-batch-size
    statistics, overheads from the client's latencies less the server's time."""
    import tritonclient.http as triton_http

    from tritonpipe.perf.generator import ProfileOptions, Profiler

    def level(concurrency: int) -> Level:
        client = triton_http.InferenceServerClient(stats_address)
        try:
            before = batch_times(dict(client.get_inference_statistics(model)), model)
            options = ProfileOptions(
                model=model,
                url=url,
                protocol=protocol,
                loads=(concurrency,),
                measurement_interval_ms=window_ms,
                max_trials=3,
                stability_percentage=100.0,
                input_data=input_data,
            )
            result = asyncio.run(Profiler(options).run())[0]
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
        return Level(executions, row.throughput, overhead)

    def measure() -> Window:
        levels = []
        concurrency = 1
        while concurrency <= 2 * max_batch_size:
            levels.append(level(concurrency))
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
) -> Profile:
    """The profile of ``model`` as served now (its config is what the simulation models)."""
    from tritonpipe.perf.candidates import ServerConfigs

    configs = ServerConfigs(http_address)
    try:
        config = served_config(configs.config(model), devices)
        progress(f"profiling '{model}' (served as {config.describe()}) with one instance ...")
        configs.apply(model, {model: {"count": 1, "max_queue_delay_us": 0}})
        measure = server_measure(
            model, url, protocol, http_address, config.max_batch_size, window_ms, input_data
        )
        return measure_profile(measure, config, model, progress=progress)
    finally:
        if configs.originals:
            configs.restore()
        configs.close()
