"""PyTorch -> ONNX, TorchScript and AOTInductor, checked against eager PyTorch at every shape the
export claims, described by a manifest.

The default ``dynamo`` exporter captures the model once with ``torch.export`` (which refuses what
tracing would bake in, see :mod:`tritonpipe.export.diagnose`); ONNX and AOTInductor are written
from that program, and TorchScript traces are refused when they bake in a sample value. ``legacy``
keeps the tracing exporters (``torch.onnx.export(dynamo=False)``, plain ``torch.jit.trace``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tritonpipe.errors import ExportError, ParityError
from tritonpipe.export import formats as fmts
from tritonpipe.export.diagnose import DynamicShapes, dynamic_shapes, export_program
from tritonpipe.export.inputs import (
    Case,
    ExportInput,
    as_export_input,
    make_arrays,
    parity_cases,
    with_ranges,
)
from tritonpipe.export.manifest import FORMATS, MANIFEST, Manifest, OutputParity, sha256
from tritonpipe.export.parity import measure, parity_batch_sizes, run_cases
from tritonpipe.export.progress import WRITING, Heartbeat
from tritonpipe.loading import load_function
from tritonpipe.tensors import Array, TensorSpec, from_torch


def _wrap(model: Any) -> Any:
    """A module returning a flat tuple, which every exporter handles; dict keys become names."""
    import torch

    class TupleOutputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return fmts.as_tuple(self.inner(*args))

    return TupleOutputs(model).eval()


def _load_model(factory: str) -> Any:
    import torch

    function = load_function(factory)  # a SpecError names what the user wrote wrong
    try:
        model = function()
    except ExportError:
        raise
    except Exception as exc:  # the user's factory: report what it raised, not a traceback
        raise ExportError(f"factory {factory!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ExportError(
            f"factory {factory!r} returned {type(model).__name__}, not torch.nn.Module"
        )
    return model.eval()


def _eager(model: Any, inputs: Sequence[ExportInput]) -> Callable[[dict[str, Array]], Any]:
    """The user's model on numpy inputs, returning whatever it returns."""
    import torch

    def run(arrays: dict[str, Array]) -> Any:
        with torch.no_grad():
            return model(*(torch.from_numpy(arrays[i.spec.name]) for i in inputs))

    return run


def _output_specs(
    results: Sequence[Any], cases: Sequence[Case], names: Sequence[str] | None
) -> tuple[TensorSpec, ...]:
    """Names, dtypes and shapes of the outputs, from eager runs over the parity cases: a dim that
    differs between cases is -1."""
    import torch

    if names is None and isinstance(results[0], dict):
        names = [str(k) for k in results[0]]
    runs = [fmts.as_tuple(r) for r in results]
    if names is None:
        names = [f"output{i}" for i in range(len(runs[0]))]
    if len(names) != len(runs[0]):
        raise ExportError(f"model returns {len(runs[0])} outputs but {len(names)} names were given")
    specs = []
    for k, name in enumerate(names):
        first = runs[0][k]
        if not isinstance(first, torch.Tensor):
            raise ExportError(f"output '{name}' is {type(first).__name__}, not a tensor")
        shapes = [tuple(run[k].shape) for run in runs]
        if any(len(s) == 0 or s[0] != c.batch for s, c in zip(shapes, cases, strict=True)):
            raise ExportError(
                f"output '{name}' has shape {list(first.shape)}: no batch dimension first"
            )
        if len({len(s) for s in shapes}) != 1:
            raise ExportError(f"output '{name}' changes rank with the input shapes")
        dims = tuple(-1 if len(set(col)) > 1 else col[0] for col in zip(*shapes, strict=True))
        specs.append(TensorSpec(name=name, dtype=from_torch(first.dtype).triton, shape=dims[1:]))
    return tuple(specs)


def _example(inputs: Sequence[ExportInput], max_batch_size: int) -> tuple[Any, ...]:
    """The inputs the exporters see. Dynamic sizes are at least 2: torch.export takes a size of
    1 (or 0) in an example as a constant."""
    import torch

    batch = 2 if max_batch_size > 1 else 1
    shapes = {
        i.spec.name: (
            batch,
            *(max(s, 2) if d == -1 else s for d, s in zip(i.spec.shape, i.sample, strict=True)),
        )
        for i in inputs
    }
    arrays = make_arrays(inputs, shapes, seed=1)
    return tuple(torch.from_numpy(arrays[i.spec.name]) for i in inputs)


def _check_arguments(formats: Sequence[str], max_batch_size: int, exporter: str) -> None:
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ExportError(f"formats {sorted(unknown) or '[]'}: choose from {sorted(FORMATS)}")
    if max_batch_size < 1:
        raise ExportError(f"max batch size must be at least 1, not {max_batch_size}")
    if exporter not in fmts.EXPORTERS:
        raise ExportError(f"exporter {exporter!r}: choose from {list(fmts.EXPORTERS)}")


def export(
    factory: str,
    inputs: Sequence[ExportInput | tuple[TensorSpec, tuple[int, ...]]],
    out_dir: Path,
    *,
    formats: Sequence[str] = ("onnx", "torchscript"),
    max_batch_size: int = 64,
    output_names: Sequence[str] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    opset: int | None = None,
    exporter: str = "dynamo",
    progress: Callable[[str], None] = lambda _: None,
) -> Manifest:
    """Export ``factory()``'s model, check parity and write ``manifest.json`` into ``out_dir``.

    Parity runs every dynamic dim at 1, its sample size and a larger size (see
    :func:`~tritonpipe.export.inputs.parity_cases`) at batch sizes 1, 7 and the max. A dim the
    model or an export cannot vary raises :class:`ExportError`; outputs out of tolerance raise
    :class:`ParityError` after the files and manifest are written. Any other failure writes
    nothing: each format is written under a temporary name, and all are renamed into place
    once every format exported and ran. ``opset`` defaults to 18 for the dynamo exporter and 17
    for the legacy one; ``progress`` hears what runs (an AOTInductor compile takes a while).
    """
    import torch

    _check_arguments(formats, max_batch_size, exporter)
    if opset is not None and opset < 17:
        raise ExportError(f"opset {opset}: tritonpipe exports with opset 17 or newer")
    raw = _load_model(factory)
    specs = with_ranges([as_export_input(i) for i in inputs], raw)
    model = _wrap(raw)
    example = _example(specs, max_batch_size)
    progress("capturing the model with torch.export")
    # torch.export first, whatever the exporter: it finds dims that must vary together (a mask
    # and its tokens). Its refusal is raised after the eager check, whose message is plainer when
    # the model itself cannot take the shapes, and only where a format is made from its program.
    program, groups, refusal = export_program(model, example, specs, max_batch_size)
    if exporter == "legacy" and "aoti" not in formats:
        refusal = None
    cases = parity_cases(specs, parity_batch_sizes(max_batch_size), groups)
    arrays = [make_arrays(specs, c.shapes, seed=100 + n) for n, c in enumerate(cases)]
    progress(f"running the eager model at {len(cases)} input shapes")
    results = run_cases("the eager model", _eager(raw, specs), cases, arrays, specs)
    if refusal is not None:
        raise refusal
    outputs = _output_specs(results, cases, output_names)
    names = [o.name for o in outputs]
    expected = [
        {n: t.detach().numpy() for n, t in zip(names, fmts.as_tuple(r), strict=True)}
        for r in results
    ]
    shapes = dynamic_shapes(specs, max_batch_size, groups)
    manifest = Manifest(
        inputs=tuple(i.spec for i in specs),
        outputs=outputs,
        max_batch_size=max_batch_size,
        opset=None,
        torch_version=torch.__version__,
        factory=factory,
        atol=atol,
        rtol=rtol,
        exporter=exporter,
        shapes=[c.to_dict() for c in cases],
        value_ranges={i.spec.name: list(i.value_range) for i in specs if i.value_range},
    )
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    failures: list[str] = []
    for fmt in formats:
        # A temporary name (same suffix: AOTInductor wants .pt2) until every format passed.
        path = out_dir / f".partial-{os.getpid()}-{FORMATS[fmt]}"
        progress(f"{fmt}: {WRITING[fmt]}")
        try:
            with Heartbeat(progress, fmt, WRITING[fmt].split(" (")[0]) as beat:
                tool = _write(
                    fmt, model, (program, shapes), example, specs, outputs, path, opset, exporter
                )
                progress(
                    f"{fmt}: written in {beat.elapsed():.1f} s; "
                    f"checking parity at {len(cases)} input shapes"
                )
                beat.phase = "checking parity"
                try:
                    run = fmts.runner(fmt, path, manifest.inputs, outputs)
                except Exception as exc:  # a file its own runtime cannot load
                    raise ExportError(
                        f"{fmt} export failed: its runtime cannot load it: {exc}"
                    ) from exc
                actual = run_cases(f"the {fmt} export", run, cases, arrays, specs)
        except ExportError as exc:
            path.unlink(missing_ok=True)
            failures.append(str(exc))
            progress(f"{fmt}: failed")
            continue
        progress(f"{fmt}: done in {beat.elapsed():.1f} s")
        staged[fmt] = path
        manifest.artifacts[fmt] = {"file": FORMATS[fmt], "sha256": sha256(path), "exporter": tool}
        if fmt == "onnx":
            manifest.opset = _onnx_opset(path)
        manifest.parity[fmt] = measure(expected, actual, cases, names, atol=atol, rtol=rtol)
        if fmt == "aoti":
            manifest.artifacts[fmt]["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    _commit(out_dir, staged, failures, created, formats)
    manifest.write(out_dir)
    _raise_on_failure(manifest)
    return manifest


def _commit(
    out_dir: Path,
    staged: dict[str, Path],
    failures: list[str],
    created: bool,
    formats: Sequence[str],
) -> None:
    """All formats into place, or none: a failure removes the staged files (and a folder this
    export made) and says which formats failed and why."""
    if failures:
        for path in staged.values():
            path.unlink()
        if created:
            out_dir.rmdir()
        done = [f for f in formats if f in staged]
        passed = f" ({', '.join(done)} exported fine)" if done else ""
        raise ExportError("\n".join(failures) + f"\nnothing was written to {out_dir}{passed}")
    # An old manifest goes first: files without one are refused by build, never mismatched.
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for fmt, path in staged.items():
        path.replace(out_dir / FORMATS[fmt])


def _write(
    fmt: str,
    model: Any,
    captured: tuple[Any, DynamicShapes],
    example: tuple[Any, ...],
    specs: Sequence[ExportInput],
    outputs: Sequence[TensorSpec],
    path: Path,
    opset: int | None,
    exporter: str,
) -> str:
    """Write one format; any exporter failure becomes an ExportError naming the format."""
    program, shapes = captured
    try:
        if fmt == "onnx":
            inputs = [i.spec for i in specs]
            return fmts.write_onnx(
                model, program, example, inputs, outputs, path, opset=opset, exporter=exporter
            )
        if fmt == "torchscript":
            return fmts.write_torchscript(model, example, path, strict=exporter == "dynamo")
        return fmts.write_aoti(_on_gpu(model, example, shapes, program), path)
    except ExportError as exc:
        raise ExportError(f"{fmt} export failed: {exc}") from exc
    except Exception as exc:
        raise ExportError(f"{fmt} export failed: {type(exc).__name__}: {exc}") from exc


def _on_gpu(model: Any, example: tuple[Any, ...], shapes: DynamicShapes, program: Any) -> Any:
    """On a machine with CUDA, the program again on the GPU: AOTInductor compiles for the device
    the program's tensors are on."""
    import copy

    import torch

    if not torch.cuda.is_available():
        return program
    on_gpu = copy.deepcopy(model).to("cuda")
    return torch.export.export(
        on_gpu, tuple(t.to("cuda") for t in example), dynamic_shapes=shapes.spec
    )


def _onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _raise_on_failure(manifest: Manifest) -> None:
    failures = [
        _describe(fmt, name, p, manifest.atol, manifest.rtol)
        for fmt, outs in manifest.parity.items()
        for name, p in outs.items()
        if not p.passed
    ]
    if failures:
        raise ParityError("parity check failed:\n" + "\n".join(failures))


def _describe(fmt: str, name: str, p: OutputParity, atol: float, rtol: float) -> str:
    if math.isnan(p.max_abs_error):
        what = "contains NaN or Inf"
    else:
        what = f"max abs error {p.max_abs_error:.3g}, max rel error {p.max_rel_error:.3g}"
    limits = f"atol {atol:g}, rtol {rtol:g}, batches {list(p.batch_sizes)}"
    where = f"; first off at {p.failed_at}" if p.failed_at else ""
    return f"  {fmt} output '{name}': {what} ({limits}{where})"
