"""tritonpipe: from a trained PyTorch model to a measured Triton inference pipeline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tritonpipe.errors import RepositoryError, TritonPipeError

app = typer.Typer(
    help="From a trained PyTorch model to a measured Triton inference pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
            help="NAME:DTYPE:DIMS without batch, e.g. pixels:FP32:1,8,8; -1=N is dynamic with sample size N. Repeat per input.",
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
        typer.Option("--format", "-f", help="onnx and/or torchscript (default: both)."),
    ] = None,
    max_batch_size: Annotated[
        int, typer.Option(help="Largest batch; parity runs at 1, 7 and this.")
    ] = 64,
    atol: Annotated[float, typer.Option(help="Absolute tolerance for parity.")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Relative tolerance for parity.")] = 1e-3,
    opset: Annotated[int, typer.Option(help="ONNX opset (17 or newer).")] = 17,
) -> None:
    """Export a PyTorch model to ONNX and/or TorchScript and check parity with eager PyTorch."""
    from tritonpipe.export import export as run_export
    from tritonpipe.tensors import parse_input_spec

    try:
        specs = [parse_input_spec(text) for text in input]
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
        f"wrote {', '.join(a['file'] for a in manifest.artifacts.values())} and manifest.json to {out}"
    )


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
    typer.echo(f"wrote {len(models)} models to {out} (validated)")


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
    typer.echo(f"{repository}: {len(models)} models, all valid")


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


def _register() -> None:
    from tritonpipe.cli import capacity, perf, serving

    app.command()(serving.serve)
    app.command()(serving.infer)
    perf.app.command()(capacity.sweep)
    app.add_typer(perf.app, name="perf")
    app.command()(capacity.plan)


_register()
