"""Writing each format (onnx, torchscript, aoti) and running it in-process for parity."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tritonpipe.errors import ExportError
from tritonpipe.export.diagnose import trace_warnings
from tritonpipe.tensors import Array, TensorSpec

Runner = Callable[[dict[str, Array]], dict[str, Array]]
EXPORTERS = ("dynamo", "legacy")
LEGACY_OPSET = 17
DYNAMO_OPSET = 18


def as_tuple(result: Any) -> tuple[Any, ...]:
    if isinstance(result, dict):
        return tuple(result.values())
    if isinstance(result, list | tuple):
        return tuple(result)
    return (result,)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and warn about deprecations and optional packages."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_log.setLevel(level)


def write_onnx(
    model: Any,
    program: Any,
    example: tuple[Any, ...],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    path: Path,
    *,
    opset: int | None,
    exporter: str,
) -> str:
    """Write ``model.onnx`` with the dynamo exporter (from ``program``) or the legacy one, with
    the user's tensor names, checked by the ONNX checker and an onnxruntime load."""
    import torch

    from tritonpipe.export.onnx_graph import check, name_and_check

    in_names, out_names = [s.name for s in inputs], [s.name for s in outputs]
    with _quiet():
        if exporter == "dynamo":
            # The exporter's own names first: given the user's, it can define one twice.
            torch.onnx.export(
                program,
                example,
                str(path),
                opset_version=opset or DYNAMO_OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            name_and_check(path, in_names, out_names)
            return "torch.onnx.export(dynamo=True)"
        axes = {
            spec.name: {0: "batch"}
            | {i + 1: f"{spec.name}_{i + 1}" for i, d in enumerate(spec.shape) if d == -1}
            for spec in (*inputs, *outputs)
        }
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=in_names,
            output_names=out_names,
            dynamic_axes=axes,
            opset_version=opset or LEGACY_OPSET,
            dynamo=False,
        )
    check(path)
    return "torch.onnx.export(dynamo=False)"


def write_torchscript(model: Any, example: tuple[Any, ...], path: Path, *, strict: bool) -> str:
    """Trace to ``model.pt``; ``strict`` refuses a trace that baked in a value from the sample."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, example, check_trace=False)  # type: ignore[no-untyped-call]
    baked = trace_warnings(caught)
    if strict and baked:
        raise ExportError(
            "torch.jit.trace baked values from the sample inputs into the trace:\n  "
            + "\n  ".join(baked)
        )
    traced.save(str(path))
    return "torch.jit.trace, checked by torch.export" if strict else "torch.jit.trace"


def write_aoti(program: Any, path: Path) -> str:
    """Compile ``program`` with AOTInductor into a ``.pt2`` package (needs a C++ compiler)."""
    import torch

    with _quiet():
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return "torch._inductor.aoti_compile_and_package"


def aoti_device(package: Any) -> str:
    """``cpu`` or ``cuda``: the device an AOTInductor package was compiled for."""
    return str(package.get_metadata().get("AOTI_DEVICE_KEY", "cpu"))


def runner(
    fmt: str,
    path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    threads: int = 0,
) -> Runner:
    """Run an exported file in-process on numpy inputs, as the serving runtime will.

    ``threads`` caps onnxruntime's intra-op threads (0: its default); torch's are process-wide
    (``torch.set_num_threads``)."""
    names = [o.name for o in outputs]
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failing shape is reported by parity, not logged twice
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run_onnx(arrays: dict[str, Array]) -> dict[str, Array]:
            feed = {s.name: arrays[s.name] for s in inputs}
            return dict(zip(names, session.run(names, feed), strict=True))

        return run_onnx
    import torch

    device = "cpu"
    if fmt == "aoti":
        module = torch._inductor.aoti_load_package(str(path))
        device = aoti_device(module)
    else:
        module = torch.jit.load(str(path))  # type: ignore[no-untyped-call]

    def run_torch(arrays: dict[str, Array]) -> dict[str, Array]:
        with torch.no_grad():
            args = [torch.from_numpy(arrays[s.name]).to(device) for s in inputs]
            result = as_tuple(module(*args))
        return {n: t.cpu().numpy() for n, t in zip(names, result, strict=True)}

    return run_torch
