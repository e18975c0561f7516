"""tritonpipe: from a trained PyTorch model to a measured Triton inference pipeline."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tritonpipe.errors import RepositoryError, TritonPipeError

if TYPE_CHECKING:
    from tritonpipe.export import Manifest

app = typer.Typer(
    help="From a trained PyTorch model to a measured Triton inference pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help text: rich would read "[batch, ...]" as markup and "start:end:step" as the
    # :end: emoji, and cut option names when stdout is not a terminal.
    rich_markup_mode=None,
    # Through a pipe the terminal size is unknown and click would wrap at 80 columns and cut
    # command summaries; use a wide page then (a real terminal keeps its own width).
    context_settings={
        "terminal_width": shutil.get_terminal_size((120, 24)).columns,
        "max_content_width": 120,
    },
)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.command()
def export(
    factory: Annotated[
        str,
        typer.Argument(
            help="'path/file.py:function' or 'package.module:function' returning an nn.Module."
        ),
    ],
    input: Annotated[
        list[str],
        typer.Option(
            "--input",
            "-i",
            help="NAME:DTYPE:DIMS[:LOW..HIGH] without batch, e.g. pixels:FP32:1,8,8 or tokens:INT64:-1=24:0..1000. -1=N is a dynamic dim with sample size N (parity also tries 1 and a larger size). LOW..HIGH bounds integer inputs (HIGH excluded); without it, integers are drawn from [0, num_embeddings) of the model's smallest nn.Embedding, or [0, 10) when it has none. Repeat per input. Float samples are standard normal, BOOL random.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the artifacts and manifest.json.")
    ],
    output: Annotated[
        list[str] | None,
        typer.Option("--output", help="Output names in order (default: dict keys or output0..)."),
    ] = None,
    format: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="onnx, torchscript and/or aoti (AOTInductor .pt2; needs a C++ compiler). Default: onnx and torchscript.",
        ),
    ] = None,
    exporter: Annotated[
        str,
        typer.Option(
            help="dynamo: capture with torch.export (ONNX via the dynamo exporter; TorchScript traces refused when they bake in sample values). legacy: torch.onnx.export(dynamo=False) and plain torch.jit.trace."
        ),
    ] = "dynamo",
    max_batch_size: Annotated[
        int, typer.Option(help="Largest batch; parity runs at 1, 7 and this.")
    ] = 64,
    atol: Annotated[float, typer.Option(help="Absolute tolerance for parity.")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Relative tolerance for parity.")] = 1e-3,
    opset: Annotated[
        int | None,
        typer.Option(help="ONNX opset, 17 or newer (default: 18 with dynamo, 17 with legacy)."),
    ] = None,
) -> None:
    """Export a PyTorch model (ONNX, TorchScript, AOTInductor); check parity at every shape.

    Parity with eager PyTorch runs at every shape the export claims: each dynamic dim at 1, its
    sample size and a larger size, crossed with batch 1, 7 and the max."""
    from tritonpipe.export import export as run_export
    from tritonpipe.export import parse_export_input

    try:
        specs = [parse_export_input(text) for text in input]
        manifest = run_export(
            factory,
            specs,
            out,
            formats=format or ["onnx", "torchscript"],
            max_batch_size=max_batch_size,
            output_names=output,
            atol=atol,
            rtol=rtol,
            opset=opset,
            exporter=exporter,
            progress=lambda line: typer.echo(line, err=True),
        )
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    for fmt, outputs in manifest.parity.items():
        for name, p in outputs.items():
            typer.echo(
                f"{fmt:<12} {name:<16} max abs {p.max_abs_error:.2e}  "
                f"max rel {p.max_rel_error:.2e}  batches {list(p.batch_sizes)}  ok"
            )
    typer.echo(
        f"parity ran on {len(manifest.shapes)} input shapes ({manifest.exporter} exporter): "
        + tried_shapes(manifest)
    )
    typer.echo(
        f"wrote {', '.join(a['file'] for a in manifest.artifacts.values())} and manifest.json to {out}"
    )


def tried_shapes(manifest: Manifest) -> str:
    """The batches and each dynamic dim's sizes parity ran at: ``batch 1, 7, 64; tokens dim 1
    at 1, 24, 37``."""
    batches = sorted({shape[0] for c in manifest.shapes for shape in c.values()})
    parts = [f"batch {', '.join(map(str, batches))}"]
    for spec in manifest.inputs:
        for dim, size in enumerate(spec.shape, start=1):
            if size == -1:
                sizes = sorted({c[spec.name][dim] for c in manifest.shapes if spec.name in c})
                parts.append(f"{spec.name} dim {dim} at {', '.join(map(str, sizes))}")
    return "; ".join(parts)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@app.command()
def build(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model repository to write (replaced).")],
    runtime: Annotated[
        str | None, typer.Option(help="Override every scoring model's runtime: python or native.")
    ] = None,
    fuse: Annotated[
        str | None,
        typer.Option(
            help="Override every ensemble's fusion: auto (adjacent Python steps run as one model) or none (one model per step)."
        ),
    ] = None,
) -> None:
    """Build a Triton model repository (stages, scoring models, fused models, ensembles) from a pipeline spec."""
    from tritonpipe.ensembles import build_repository

    if runtime not in (None, "python", "native"):
        raise fail(f"--runtime {runtime!r}: choose python or native")
    if fuse not in (None, "auto", "none"):
        raise fail(f"--fuse {fuse!r}: choose auto or none")
    try:
        models = build_repository(spec, out, runtime=runtime, fuse=fuse)
    except RepositoryError as exc:
        raise fail("the built repository is invalid:\n" + "\n".join(exc.problems)) from None
    except TritonPipeError as exc:
        raise fail(str(exc)) from None
    for name, model in models.items():
        kind = model.config.platform or model.config.backend
        steps = (
            model.config.parameters["tritonpipe.steps"].string_value
            if "tritonpipe.steps" in model.config.parameters
            else ""
        )
        fused = f"  runs {steps.replace(',', ' -> ')}" if "," in steps else ""
        typer.echo(f"  {name:<24} {kind:<18} max_batch_size {model.config.max_batch_size}{fused}")
    typer.echo(f"wrote {plural(len(models), 'model')} to {out} (validated)")


@app.command()
def validate(
    repository: Annotated[Path, typer.Argument(help="Triton model repository folder.")],
) -> None:
    """Validate any Triton model repository: configs, files, batch sizes, ensemble wiring."""
    from tritonpipe.repository import validate_repository

    try:
        models = validate_repository(repository)
    except RepositoryError as exc:
        for problem in exc.problems:
            typer.secho(problem, err=True, fg=typer.colors.RED)
        raise fail(f"{len(exc.problems)} problem(s) in {repository}") from None
    typer.echo(f"{repository}: {plural(len(models), 'model')}, all valid")


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


def _register() -> None:
    from tritonpipe.cli import batch, capacity, deploy, logs, monitor, perf, serving, stream

    app.command()(serving.serve)
    app.command()(serving.infer)
    perf.app.command()(capacity.sweep)
    perf.app.command()(capacity.device)
    app.add_typer(perf.app, name="perf")
    app.add_typer(deploy.app, name="deploy")
    app.add_typer(logs.app, name="logs")
    app.add_typer(monitor.app, name="monitor")
    app.command()(capacity.plan)
    app.command()(batch.batch)
    app.add_typer(stream.app, name="stream")


_register()
