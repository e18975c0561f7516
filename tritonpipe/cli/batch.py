"""`tritonpipe batch`: score a job config's input files and write predictions (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tritonpipe.errors import TritonPipeError


def batch(
    job: Annotated[
        Path,
        typer.Argument(help="Job config (YAML): pipeline, source, output, key, bad_rows, log."),
    ],
    engine: Annotated[
        str, typer.Option(help="inprocess (default; or triton when --url is set) or spark.")
    ] = "",
    url: Annotated[
        str | None,
        typer.Option(
            help="Score on a running Triton server (http://host:8000 or grpc://host:8001)."
        ),
    ] = None,
    in_flight: Annotated[int, typer.Option(help="Requests kept in flight against --url.")] = 8,
    master: Annotated[
        str,
        typer.Option(
            help="Spark master for --engine spark: local[*], spark://host:7077, yarn, k8s://..."
        ),
    ] = "local[*]",
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Write prediction logs to the job's log: sink.")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
    ] = True,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Feast source: score every entity's latest feature values as of this time "
            "(ISO 8601, e.g. 2026-01-27T00:00:00Z) instead of the entity rows in source.path."
        ),
    ] = None,
    feature_service: Annotated[
        str | None, typer.Option(help="Feast source: replaces source.feature_service.")
    ] = None,
) -> None:
    """Run a batch-inference job; a rerun skips units already committed (0 lost, 0 duplicated)."""
    from tritonpipe.batch import load_config, run_job
    from tritonpipe.cli.main import fail

    kind = engine or ("triton" if url else "inprocess")
    try:
        config = load_config(job)
        if as_of is not None or feature_service is not None:
            config = _feast_overrides(config, as_of, feature_service, str(job))
        if kind == "spark":
            from tritonpipe.batch.spark import run_spark

            summary = run_spark(config, master=master, url=url)
        elif kind == "triton":
            if not url or not config.model:
                raise fail(f"--engine triton needs --url and, in {job}, model: (the served model)")
            from tritonpipe.batch import TritonEngine

            remote = TritonEngine(
                url, config.model or "", batch_size=config.batch_size, in_flight=in_flight
            )
            summary = run_job(config, remote, progress=progress, log=log, engine_name="triton")
        elif kind == "inprocess":
            summary = run_job(config, progress=progress, log=log)
        else:
            raise fail(f"--engine {engine}: choose inprocess, triton or spark")
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # a write that failed (disk full, a folder gone): the unit is not done
        raise fail(
            f"writing the output failed: {exc}; committed units stay, rerun to finish"
        ) from None
    typer.echo(summary.text())


def _feast_overrides(config: Any, as_of: str | None, service: str | None, where: str) -> Any:
    """The job with --as-of / --feature-service applied, validated again."""
    from tritonpipe.batch import parse_config

    raw = config.model_dump()
    if as_of is not None:
        raw["source"].update(type="feast", as_of=as_of, path=None)
    if service is not None:
        raw["source"]["feature_service"] = service
    return parse_config(raw, where=f"{where} with --as-of/--feature-service")
