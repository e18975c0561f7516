"""`tritonpipe logs`: read prediction logs back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonpipe.errors import TritonPipeError

app = typer.Typer(help="Prediction logs written by logging pipelines.", no_args_is_help=True)


@app.command()
def read(
    source: Annotated[
        str, typer.Argument(help="Parquet log folder, or redis://host:port/db#stream.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write all records to .parquet or .csv.")
    ] = None,
    tail: Annotated[int, typer.Option(help="Records to print (the latest).")] = 10,
) -> None:
    """Load prediction logs as a DataFrame: print the latest records, or write them all."""
    from tritonpipe.cli.main import fail
    from tritonpipe.predlog import read_logs

    try:
        frame = read_logs(source)
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    if out is not None:
        if out.suffix == ".csv":
            frame.to_csv(out, index=False)
        elif out.suffix == ".parquet":
            frame.to_parquet(out, index=False)
        else:
            raise fail(f"--out {out}: use a .parquet or .csv file")
        typer.echo(f"wrote {len(frame):,} records to {out}")
        return
    typer.echo(frame.tail(tail).to_string())
    typer.echo(f"{len(frame):,} records in {source}")


@app.command()
def compare(
    source: Annotated[
        str, typer.Argument(help="Prediction logs of both versions (Parquet folder or redis://).")
    ],
    decision: Annotated[
        str | None, typer.Option(help="Decision output (default: the first boolean one).")
    ] = None,
    score: Annotated[
        str | None, typer.Option(help="Score output (default: the first float one).")
    ] = None,
    champion: Annotated[
        str | None, typer.Option(help="The champion's model_version (default: most answers).")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Labels (Parquet) keyed by request id: quality per version.")
    ] = None,
    label_id: Annotated[str, typer.Option(help="Request-id column of --labels.")] = "request_id",
    label_column: Annotated[str, typer.Option(help="0/1 label column of --labels.")] = "label",
    report: Annotated[Path | None, typer.Option(help="Folder for report.md and its plots.")] = None,
) -> None:
    """Compare two versions: decision agreement and score deltas on shadow pairs, and per version records, rates, compute time and (with --labels) AUC and accuracy with 95% bootstrap intervals."""
    from tritonpipe.cli.main import fail
    from tritonpipe.compare import compare_logs, read_labels, write_report
    from tritonpipe.predlog import read_logs

    try:
        truth = None
        if labels is not None:
            truth = read_labels(labels, id_column=label_id, label_column=label_column)
        result = compare_logs(
            read_logs(source), decision=decision, score=score, champion=champion, labels=truth
        )
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    for line in result.lines():
        typer.echo(line)
    if report is not None:
        typer.echo(f"report: {write_report(result, report)}")
