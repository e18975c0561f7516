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
