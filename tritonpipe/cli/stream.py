"""`tritonpipe stream`: run a stream worker, show a group's status, replay events into a bus."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from tritonpipe.errors import TritonPipeError

app = typer.Typer(
    help="Stream inference: workers that score events from Redis Streams, NATS JetStream or Kafka.",
    no_args_is_help=True,
)
Config = Annotated[Path, typer.Argument(help="Stream job config (YAML).")]


@app.command()
def run(
    config: Config,
    consumer: Annotated[
        str | None, typer.Option(help="Consumer name in the group (default: host-pid).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Score on this Triton server instead of the embedded pipeline."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (0: any free port).")
    ] = None,
    threads: Annotated[int, typer.Option(help="Intra-op threads of the embedded model.")] = 1,
) -> None:
    """Run one worker until SIGTERM/SIGINT: the batch in hand is finished and acknowledged, exit 0."""
    from tritonpipe.cli.main import fail
    from tritonpipe.stream import build_worker, load_config, run_until_signalled

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        job = load_config(config)
        worker = build_worker(
            job, consumer=consumer, url=url, metrics_port=metrics_port, threads=threads
        )
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    port = worker.metrics.port if worker.metrics is not None else None
    typer.echo(
        f"worker {worker.consumer}: {job.bus.type} stream '{job.bus.stream}' -> "
        f"{worker.scorer.name}" + (f", metrics on http://127.0.0.1:{port}/metrics" if port else ""),
    )
    try:
        counts = run_until_signalled(worker)
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"worker {worker.consumer} stopped: {counts.scored} scored, {counts.duplicates} "
        f"duplicates, {counts.dead} dead-lettered, {counts.retried} retried, "
        f"{counts.bus_errors} bus errors"
    )


@app.command()
def status(
    config: Config,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the group's lag, pending (per consumer) and output / dead-letter counts."""
    from tritonpipe.cli.main import fail
    from tritonpipe.stream import load_config
    from tritonpipe.stream import status as read_status

    try:
        info = read_status(load_config(config))
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # the bus client's own errors: no server, no such stream
        raise fail(
            f"{config}: cannot read the stream's status: {type(exc).__name__}: {exc}"
        ) from None
    if as_json:
        typer.echo(json.dumps(info))
        return
    typer.echo(f"stream {info['stream']} (group {info['group']}): {info['length']} events")
    typer.echo(f"  lag           {info['lag']}")
    typer.echo(f"  pending       {info['pending']}")
    for name, pending in info["consumers"].items():
        typer.echo(f"    {name:<24} {pending}")
    for partition, lag in info.get("partitions", {}).items():  # Kafka: lag per partition
        typer.echo(f"    partition {partition:<14} lag {lag}")
    typer.echo(f"  outputs       {info['outputs']}")
    typer.echo(f"  dead letters  {info['dead_letters']}")


@app.command()
def replay(
    config: Config,
    events: Annotated[Path, typer.Argument(help="Events to publish: .jsonl, .parquet or .csv.")],
    rate: Annotated[
        float | None, typer.Option(help="Events per second (default: as fast as possible).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Publish at most this many.")] = None,
    keep_time: Annotated[
        bool, typer.Option(help="Keep the events' own time field instead of stamping publish time.")
    ] = False,
) -> None:
    """Publish recorded events into the job's input stream at a chosen rate."""
    import itertools

    from tritonpipe.cli.main import fail
    from tritonpipe.stream import load_config
    from tritonpipe.stream.replay import read_events
    from tritonpipe.stream.replay import replay as publish

    try:
        job = load_config(config)
        rows = itertools.islice(read_events(events), limit)
        sent = publish(job, rows, rate=rate, stamp=not keep_time)
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"published {sent} events to {job.bus.type} stream '{job.bus.stream}'")
