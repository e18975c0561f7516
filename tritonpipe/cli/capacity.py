"""`tritonpipe perf sweep` and `tritonpipe plan`: find the best serving config under a latency
constraint, then size (and price) the fleet for a target load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tritonpipe.errors import SpecError, TritonPipeError

if TYPE_CHECKING:
    from tritonpipe.capacity.candidates import Grid
    from tritonpipe.capacity.sweep import MeasureOptions


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SpecError(f"{option} {text!r}: expected comma-separated integers") from None


def sweep(
    source: Annotated[Path, typer.Argument(help="Pipeline spec (.yaml) or model repository.")],
    model: Annotated[str, typer.Option("-m", "--model-name", help="Ensemble or model to tune.")],
    slo_p99_ms: Annotated[
        float | None, typer.Option(help="Maximise throughput subject to p99 <= this (ms).")
    ] = None,
    min_throughput: Annotated[
        float | None, typer.Option(help="Or: minimise p99 subject to >= this many infer/s.")
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            help="brute (every grid point), quick (hill climbing) or guided (profile the model, "
            "simulate every point, then hill-climb from the simulation's best, measuring the "
            "neighbours it finds promising; at most a quarter of the grid)."
        ),
    ] = "quick",
    count: Annotated[str, typer.Option(help="Instance counts to try.")] = "1,2",
    max_batch_size: Annotated[str, typer.Option(help="max_batch_size values.")] = "8,64",
    queue_delay_us: Annotated[
        str, typer.Option(help="max_queue_delay_microseconds values.")
    ] = "0,500,2000",
    preferred_batch_size: Annotated[
        str, typer.Option(help="Preferred batch sizes (0: none); empty: not swept.")
    ] = "",
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated composing models to vary (default: all of an unfused ensemble's)."
        ),
    ] = None,
    results: Annotated[
        Path, typer.Option(help="Results file (JSON lines); an interrupted sweep resumes from it.")
    ] = Path("build/sweep/results.jsonl"),
    report: Annotated[
        Path | None, typer.Option(help="Folder for the HTML report (default: beside --results).")
    ] = None,
    protocol: Annotated[str, typer.Option("-i", "--protocol", help="http or grpc.")] = "grpc",
    transport: Annotated[str, typer.Option(help="raw (default) or tritonclient.")] = "raw",
    window_ms: Annotated[int, typer.Option(help="Measurement window (ms).")] = 1000,
    max_concurrency: Annotated[int, typer.Option(help="Highest concurrency tried.")] = 64,
    input_data: Annotated[
        str, typer.Option(help="zero, random or a perf_analyzer JSON file.")
    ] = "random",
    apply: Annotated[
        bool, typer.Option(help="Write the winner into the spec (comments kept) and rebuild.")
    ] = False,
    repository_out: Annotated[
        Path, typer.Option(help="Where --apply rebuilds the repository.")
    ] = Path("model_repository"),
    devices: Annotated[
        int, typer.Option(help="guided: executions at once (1: the instances share one device).")
    ] = 1,
) -> None:
    """Search serving configs (instances, batch sizes, queue delay) on a live server."""
    from tritonpipe.capacity import search
    from tritonpipe.capacity.apply import apply_settings, spec_entry
    from tritonpipe.capacity.candidates import ServerConfigs, complete, describe, make_grid, served
    from tritonpipe.capacity.session import is_spec, serving
    from tritonpipe.capacity.sweep import MeasureOptions, Objective, ResultsFile, Sweep
    from tritonpipe.capacity.sweep_report import (
        console_table,
        no_winner,
        ranked,
        write_sweep_report,
    )

    try:
        objective = Objective(slo_p99_ms=slo_p99_ms, min_throughput=min_throughput)
        if strategy not in search.STRATEGIES:
            raise SpecError(f"--strategy {strategy!r}: brute, quick or guided")
        if strategy == "guided" and slo_p99_ms is None:
            raise SpecError("--strategy guided ranks by throughput within --slo-p99-ms: give it")
        if apply and not is_spec(source):
            raise SpecError(f"--apply writes into a pipeline spec; {source} is not one")
        values = {
            "count": _ints(count, "--count"),
            "max_batch_size": _ints(max_batch_size, "--max-batch-size"),
            "max_queue_delay_us": _ints(queue_delay_us, "--queue-delay-us"),
            "preferred_batch_size": _ints(preferred_batch_size, "--preferred-batch-size"),
        }
        with serving(source, model) as server:
            configs = ServerConfigs(server.http_url.split("://")[1])
            parts = configs.composing(model) or [model]
            swept = [m.strip() for m in only.split(",")] if only else parts
            stray = [m for m in swept if m not in parts]
            if stray:
                raise SpecError(f"--only {stray}: not models of '{model}' (it runs {parts})")
            if apply:
                for m in swept:
                    spec_entry(source, m)
            grid = make_grid(swept, values)
            start = search.nearest(grid, {m: served(configs.config(m)) for m in swept})
            options = MeasureOptions(
                target=model,
                url=(server.grpc_url if protocol == "grpc" else server.http_url).split("://")[1],
                protocol=protocol,
                concurrencies=tuple(
                    c for c in (1, 2, 4, 8, 16, 32, 64, 128, 256) if c <= max_concurrency
                ),
                window_ms=window_ms,
                input_data=input_data,
                transport=transport,
            )
            file = ResultsFile(results, options.header())
            typer.echo(
                f"sweeping '{model}' ({strategy}, {grid.size()} grid points, {objective.describe()}); "
                f"{len(file.done)} already in {results}"
            )
            run = Sweep(grid, objective, options, configs, file, typer.echo)
            ranking = None
            if strategy == "guided":
                ranking = _ranking(grid, options, server.http_url, devices, slo_p99_ms or 0.0)
            search.run(strategy, grid, run.evaluate, start, ranking)
            originals = {m: served(configs.originals.get(m) or configs.config(m)) for m in swept}
            configs.close()
        done = [file.done[k] for k in run.visited]
        typer.echo(console_table(done, objective))
        index = write_sweep_report(
            done, objective, report or results.parent / "report", f"Sweep of {model}"
        )
        typer.echo(
            f"{len(done)} configs ({run.measured} measured now, {len(done) - run.measured} from "
            f"{results}); report: {index}"
        )
        best = ranked(done, objective)[0]
        if best.best(objective) is None:
            raise no_winner(done, objective)
        typer.echo(f"best: {describe(best.settings)}")
        if apply:
            from tritonpipe.ensembles import build_repository

            apply_settings(source, {m: complete(originals[m], k) for m, k in best.settings.items()})
            build_repository(source, repository_out)
            typer.echo(f"wrote the winner into {source} and rebuilt {repository_out}")
    except TritonPipeError as exc:
        raise _fail(exc) from None


def _ranking(
    grid: Grid, options: MeasureOptions, http_url: str, devices: int, slo_p99_ms: float
) -> list[tuple[tuple[int, ...], float]]:
    """The guided search's ranking: the target profiled once, every grid point simulated."""
    from tritonpipe.capacity.guide import GUIDE_STABILITY, rank
    from tritonpipe.capacity.measure import profile_server

    largest = max(
        (max(d.values) for d in grid.dimensions if d.knob == "max_batch_size"), default=None
    )
    profile = profile_server(
        options.target,
        options.url,
        options.protocol,
        http_url.split("://")[1],
        input_data=options.input_data,
        devices=devices,
        progress=typer.echo,
        max_batch_size=largest,
        stability=GUIDE_STABILITY,
    )
    return rank(grid, profile, slo_p99_ms / 1000)


def plan(
    qps: Annotated[float | None, typer.Option(help="Peak load to serve (infer/s).")] = None,
    daily_curve: Annotated[
        Path | None, typer.Option(help="File of loads, one per period (e.g. 24 hours).")
    ] = None,
    slo_p99_ms: Annotated[float, typer.Option(help="p99 latency SLO (ms).")] = 20.0,
    headroom: Annotated[
        float, typer.Option(help="Fraction of each replica's SLO-limited load kept free.")
    ] = 0.2,
    price: Annotated[
        float | None, typer.Option(help="Price per server-hour (or per GPU-hour).")
    ] = None,
    price_unit: Annotated[str, typer.Option(help="server or gpu.")] = "server",
    gpus_per_replica: Annotated[int, typer.Option(help="GPUs per replica (gpu prices).")] = 1,
    profile: Annotated[
        Path | None,
        typer.Option(
            help="A service profile saved by an earlier plan (its --report profile.json)."
        ),
    ] = None,
    source: Annotated[
        Path | None, typer.Option(help="Spec or repository to measure (no --profile, --validate).")
    ] = None,
    model: Annotated[str | None, typer.Option("-m", "--model-name", help="Model to plan.")] = None,
    sweep_results: Annotated[
        Path | None, typer.Option("--sweep", help="Serve the best config of this sweep.")
    ] = None,
    validate: Annotated[
        bool, typer.Option(help="Measure one replica at 50/70/90% of its SLO capacity.")
    ] = False,
    devices: Annotated[
        int,
        typer.Option(
            help="Executions that run at once: 1 when the instances share one device (a GPU); "
            "the instance count when each has its own."
        ),
    ] = 1,
    tune: Annotated[
        bool, typer.Option(help="Also rank other instance counts, batch sizes and queue delays.")
    ] = False,
    stability_percentage: Annotated[
        float,
        typer.Option(
            help="Profile windows may differ by this much (max - min over median), or by up "
            "to 2.5% of the SLO in milliseconds."
        ),
    ] = 20.0,
    protocol: Annotated[str, typer.Option("-i", "--protocol", help="http or grpc.")] = "grpc",
    window_ms: Annotated[
        int, typer.Option(help="Profile window (ms); validation windows are 4x (>= 2 s).")
    ] = 500,
    input_data: Annotated[
        str, typer.Option(help="zero, random or a perf_analyzer JSON file.")
    ] = "random",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Folder for the HTML report.")] = None,
) -> None:
    """Size a fleet: replicas, utilisation, cost and predicted p99 for a target load.

    One replica's service profile (execution time per batch size from Triton's statistics, the
    client/network overhead) is measured in repeated windows and drives a simulation of Triton's
    dynamic batcher under Poisson arrivals; each prediction's interval is its range over the
    windows. Unstable measurements are refused."""
    from tritonpipe.capacity.plan_run import PlanRequest, run_plan

    try:
        if price is None:
            raise SpecError(
                "plan needs a price: give --price (per server-hour, or per GPU-hour with "
                "--price-unit gpu)"
            )
        request = PlanRequest(
            qps=qps,
            daily_curve=daily_curve,
            slo_p99_ms=slo_p99_ms,
            headroom=headroom,
            price=price,
            price_unit=price_unit,
            gpus_per_replica=gpus_per_replica,
            profile=profile,
            source=source,
            model=model,
            sweep=sweep_results,
            validate=validate,
            protocol=protocol,
            window_ms=window_ms,
            input_data=input_data,
            report=report,
            devices=devices,
            tune=tune,
            stability=stability_percentage / 100,
        )
        result = run_plan(request, typer.echo)
    except TritonPipeError as exc:
        raise _fail(exc) from None
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        typer.echo(f"wrote {json_out}")


def device(
    repository: Annotated[Path, typer.Argument(help="Repository folder to write the model into.")],
    name: Annotated[str, typer.Option(help="Model name.")] = "device",
    a_ms: Annotated[float, typer.Option(help="Fixed time per execution (ms).")] = 4.0,
    b_ms: Annotated[float, typer.Option(help="Time per row of the batch (ms).")] = 1.0,
    count: Annotated[int, typer.Option(help="Instances sharing the device.")] = 1,
    max_batch_size: Annotated[int, typer.Option(help="Largest batch.")] = 8,
    queue_delay_us: Annotated[int, typer.Option(help="Dynamic batcher queue delay (us).")] = 0,
) -> None:
    """Write a known-answer device (a simulated accelerator) into a repository.

    Each execution holds one device, shared by the instances, for A + B x rows ms (input x,
    output y = x, FP32[1])."""
    from tritonpipe.capacity.device import Device, write_device

    try:
        spec = Device(
            name=name,
            a_ms=a_ms,
            b_ms=b_ms,
            count=count,
            max_batch_size=max_batch_size,
            max_queue_delay_us=queue_delay_us,
        )
        folder = write_device(repository, spec)
    except TritonPipeError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"wrote {folder}: {a_ms:g} + {b_ms:g} ms x rows per execution, {count} instance(s) on one "
        f"device (lock {spec.lock_path}), full batches {spec.capacity():.0f} rows/s at most"
    )
