"""`tritonpipe perf`: profile (perf_analyzer's options), locust load tests, reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonpipe.errors import TritonPipeError

app = typer.Typer(
    help="Profile, load-test and report on Triton models.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as in cli/main.py
)


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def _metrics_url(given: str | None, address: str) -> str | None:
    """--metrics-url; else that of the server `tritonpipe serve` started at ``address``; else
    the server's host on Triton's default port 8002."""
    from tritonpipe.server.running import metrics_url_for

    if given == "none":
        return None
    if given:
        return given if "://" in given else f"http://{given}"
    host = address.split("://")[-1].rpartition(":")[0] or "localhost"
    return metrics_url_for(address) or f"http://{host}:8002/metrics"


@app.command()
def profile(
    model: Annotated[str, typer.Option("-m", "--model-name", help="Model or ensemble to profile.")],
    url: Annotated[
        str | None,
        typer.Option(
            "-u", "--url", help="host:port (default localhost:8000 for HTTP, :8001 for gRPC)."
        ),
    ] = None,
    protocol: Annotated[str, typer.Option("-i", "--protocol", help="http or grpc.")] = "http",
    batch_size: Annotated[int, typer.Option("-b", "--batch-size", help="Rows per request.")] = 1,
    concurrency_range: Annotated[
        str | None, typer.Option(help="start:end:step of requests in flight.")
    ] = None,
    request_rate_range: Annotated[
        str | None, typer.Option(help="start:end:step requests per second.")
    ] = None,
    request_distribution: Annotated[
        str, typer.Option(help="constant or poisson (request-rate mode).")
    ] = "constant",
    measurement_interval: Annotated[
        int, typer.Option("-p", "--measurement-interval", help="Window length in ms.")
    ] = 5000,
    stability_percentage: Annotated[
        float,
        typer.Option(
            "-s", "--stability-percentage", help="Allowed spread of the last 3 windows, %."
        ),
    ] = 10.0,
    max_trials: Annotated[
        int, typer.Option(help="Windows per load level before giving up on stability.")
    ] = 10,
    percentile: Annotated[
        int | None,
        typer.Option(help="Stabilise on this latency percentile instead of the average."),
    ] = None,
    input_data: Annotated[
        str, typer.Option(help="zero, random or a perf_analyzer JSON file.")
    ] = "random",
    shape: Annotated[
        list[str] | None, typer.Option(help="NAME:D1,D2 for dynamic dims (repeat).")
    ] = None,
    shared_memory: Annotated[str, typer.Option(help="none or system.")] = "none",
    file: Annotated[
        Path | None, typer.Option("-f", "--filename", help="Write perf_analyzer's CSV here.")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="tritonpipe (asyncio) or perf_analyzer (the real binary).")
    ] = "tritonpipe",
    transport: Annotated[
        str,
        typer.Option(
            help="tritonpipe engine: raw (requests serialized once and sent as bytes, on HTTP and gRPC: far less client CPU) or tritonclient (its asyncio clients)."
        ),
    ] = "raw",
    token: Annotated[
        str | None, typer.Option(help="Token for a protected server.", envvar="TRITONPIPE_TOKEN")
    ] = None,
    metrics_url: Annotated[
        str | None,
        typer.Option(
            help="Triton's metrics endpoint (default: that of the server `tritonpipe serve` started at --url, else the server's host, port 8002, /metrics); per-step times of tritonpipe models are read from it into <file>_steps.csv. 'none' turns it off."
        ),
    ] = None,
    client_cpus: Annotated[
        str | None,
        typer.Option(
            help="Run the load generator (either engine) only on these CPUs, as taskset -c writes them: 0, 0,1 or 0-1. On a small machine, pin the server to the others so the client and server do not compete for cores."
        ),
    ] = None,
) -> None:
    """Measure throughput and latency per load level, as perf_analyzer does."""
    from tritonpipe.perf.affinity import format_cpus, parse_cpus, pin
    from tritonpipe.perf.generator import ProfileOptions
    from tritonpipe.perf.input_data import parse_shapes
    from tritonpipe.perf.profile import parse_range, profile, summary

    try:
        if concurrency_range and request_rate_range:
            raise typer.BadParameter("give --concurrency-range or --request-rate-range, not both")
        if protocol not in ("http", "grpc") or shared_memory not in ("none", "system"):
            raise typer.BadParameter("-i is http or grpc; --shared-memory is none or system")
        mode = "request_rate" if request_rate_range else "concurrency"
        loads = parse_range(
            request_rate_range or concurrency_range or "1", integer=mode == "concurrency"
        )
        address = url or f"localhost:{8001 if protocol == 'grpc' else 8000}"
        options = ProfileOptions(
            model=model,
            url=address.split("://")[-1],
            protocol=protocol,
            batch_size=batch_size,
            mode=mode,
            loads=loads,
            distribution=request_distribution,
            measurement_interval_ms=measurement_interval,
            stability_percentage=stability_percentage,
            max_trials=max_trials,
            percentile=percentile,
            input_data=input_data,
            shapes=parse_shapes(shape or []),
            shared_memory=shared_memory,
            token=token,
            transport=transport,
            metrics_url=_metrics_url(metrics_url, address),
        )
        cpus = parse_cpus(client_cpus, "--client-cpus") if client_cpus is not None else None
        if cpus is not None:
            pin(cpus)  # perf_analyzer, started below, inherits the CPUs
        typer.echo(
            f"profiling '{model}' at {options.url} over {protocol} with {engine}: {mode} "
            f"{', '.join(f'{v:g}' for v in loads)}"
            + (f" on CPUs {format_cpus(cpus)}" if cpus is not None else "")
        )
        results = profile(options, file, engine, typer.echo)
    except TritonPipeError as exc:
        raise _fail(exc) from None
    typer.echo(summary(results, mode))
    if file:
        typer.echo(
            f"wrote {file}"
            + (
                f" and {len(results[0].composing)} composing-model CSVs"
                if results and results[0].composing
                else ""
            )
            + (" and per-step times (_steps.csv)" if any(r.steps for r in results) else "")
        )
    if any(r.errors for r in results):
        first = next(r.first_error for r in results if r.errors)
        typer.secho(
            f"warning: some requests failed, e.g. {first}", err=True, fg=typer.colors.YELLOW
        )


@app.command()
def locust(
    url: Annotated[str, typer.Option("--host", help="http://host:port or grpc://host:port.")],
    model: Annotated[str, typer.Option("-m", "--model-name", help="Model to load-test.")],
    users: Annotated[int, typer.Option("-u", "--users", help="Concurrent users.")] = 4,
    spawn_rate: Annotated[
        float, typer.Option("-r", "--spawn-rate", help="Users started per second.")
    ] = 4.0,
    run_time: Annotated[
        str, typer.Option("-t", "--run-time", help="Duration, e.g. 30s or 2m.")
    ] = "20s",
    input_data: Annotated[
        str, typer.Option(help="zero, random or a perf_analyzer JSON file.")
    ] = "random",
    batch_size: Annotated[int, typer.Option("-b", "--batch-size", help="Rows per request.")] = 1,
    csv: Annotated[Path, typer.Option(help="Prefix of locust's CSV files.")] = Path(
        "build/locust/run"
    ),
) -> None:
    """Run locust headless for a fixed time; write its CSV stats and a perf_analyzer-format row."""
    from tritonpipe.perf.generator import LevelResult
    from tritonpipe.perf.locust_run import LocustRun, run_locust
    from tritonpipe.perf.profile import summary

    try:
        result = run_locust(
            LocustRun(
                url=url,
                model=model,
                users=users,
                spawn_rate=spawn_rate,
                run_time=run_time,
                input_data=input_data,
                batch_size=batch_size,
                csv_prefix=csv,
            )
        )
    except TritonPipeError as exc:
        raise _fail(exc) from None
    typer.echo(
        summary(
            [LevelResult(result.row, {}, True, result.requests, result.failures, None)],
            "concurrency",
        )
    )
    typer.echo(
        f"{result.requests} requests, {result.failures} failures; wrote {result.stats_csv} and {result.perf_csv}"
    )
    if result.failures:
        raise typer.Exit(1)


@app.command()
def report(
    csvs: Annotated[list[Path], typer.Argument(help="perf_analyzer-format CSVs (one curve each).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html and the PNGs.")],
    title: Annotated[str, typer.Option(help="Page title.")] = "tritonpipe profile",
) -> None:
    """Write a self-contained HTML page and PNG plots from profile CSVs."""
    from tritonpipe.perf.report import write_report

    try:
        index = write_report(csvs, out, title)
    except TritonPipeError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {index} and {len(list(out.glob('*.png')))} PNGs")
