"""PyTorch -> ONNX and TorchScript, checked against eager PyTorch, described by a manifest."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.errors import ExportError, ParityError
from tritonpipe.export.manifest import FORMATS, Manifest, OutputParity, sha256
from tritonpipe.export.parity import measure, parity_batch_sizes
from tritonpipe.loading import load_function
from tritonpipe.tensors import Array, TensorSpec, dtype, from_torch

DEFAULT_OPSET = 17


class _Sample:
    """Random inputs for a set of specs, reproducible by seed."""

    def __init__(self, specs: Sequence[TensorSpec], sample_shapes: Sequence[tuple[int, ...]]):
        self.specs = specs
        self.sample_shapes = sample_shapes

    def make(self, batch: int, seed: int, grow: int = 0) -> dict[str, Array]:
        """``batch`` rows; ``grow`` is added to every dynamic dim (to find dynamic outputs)."""
        rng = np.random.default_rng(seed)
        out: dict[str, Array] = {}
        for spec, sample in zip(self.specs, self.sample_shapes, strict=True):
            dims = [s + grow if d == -1 else s for d, s in zip(spec.shape, sample, strict=True)]
            shape = (batch, *dims)
            np_type = np.dtype(dtype(spec.dtype).numpy)
            if np_type.kind == "f":
                out[spec.name] = rng.standard_normal(shape).astype(np_type)
            elif np_type.kind == "b":
                out[spec.name] = rng.random(shape) > 0.5
            elif np_type.kind in "iu":
                # Small non-negative values stay valid as indices into embeddings.
                out[spec.name] = rng.integers(0, 10, shape).astype(np_type)
            else:
                raise ExportError(f"input '{spec.name}': {spec.dtype} inputs cannot be exported")
        return out


def _as_tuple(result: Any) -> tuple[Any, ...]:
    if isinstance(result, dict):
        return tuple(result.values())
    if isinstance(result, list | tuple):
        return tuple(result)
    return (result,)


def _wrap(model: Any) -> Any:
    """A module returning a flat tuple, which both exporters handle; dict keys become names."""
    import torch

    class TupleOutputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return _as_tuple(self.inner(*args))

    return TupleOutputs(model).eval()


def _load_model(factory: str) -> Any:
    import torch

    try:
        model = load_function(factory)()
    except ExportError:
        raise
    except Exception as exc:  # the user's factory: report what it raised, not a traceback
        raise ExportError(f"factory {factory!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ExportError(
            f"factory {factory!r} returned {type(model).__name__}, not torch.nn.Module"
        )
    return model.eval()


def _dict_keys(model: Any, specs: Sequence[TensorSpec], sample: _Sample) -> list[str] | None:
    """Output names from a model that returns a dict, in its order."""
    import torch

    inputs = sample.make(2, seed=0)
    with torch.no_grad():
        result = model(*(torch.from_numpy(inputs[s.name]) for s in specs))
    return [str(k) for k in result] if isinstance(result, dict) else None


def _eager(model: Any, specs: Sequence[TensorSpec], names: Sequence[str]) -> Any:
    import torch

    def run(inputs: dict[str, Array]) -> dict[str, Array]:
        with torch.no_grad():
            result = model(*(torch.from_numpy(inputs[s.name]) for s in specs))
        return {n: t.detach().numpy() for n, t in zip(names, result, strict=True)}

    return run


def _output_specs(
    model: Any, specs: Sequence[TensorSpec], sample: _Sample, names: Sequence[str] | None
) -> tuple[TensorSpec, ...]:
    """Names, dtypes and shapes of the outputs; a dim that changes with the inputs is -1."""
    import torch

    def run(batch: int, grow: int) -> tuple[Any, ...]:
        inputs = sample.make(batch, seed=0, grow=grow)
        with torch.no_grad():
            return tuple(model(*(torch.from_numpy(inputs[s.name]) for s in specs)))

    base, other = run(2, 0), run(3, 1)
    if names is None:
        names = [f"output{i}" for i in range(len(base))]
    if len(names) != len(base):
        raise ExportError(f"model returns {len(base)} outputs but {len(names)} names were given")
    result = []
    for name, a, b in zip(names, base, other, strict=True):
        if not isinstance(a, torch.Tensor):
            raise ExportError(f"output '{name}' is {type(a).__name__}, not a tensor")
        if a.dim() == 0 or a.shape[0] != 2 or b.shape[0] != 3:
            raise ExportError(
                f"output '{name}' has shape {list(a.shape)}: no batch dimension first"
            )
        dims = tuple(x if x == y else -1 for x, y in zip(a.shape[1:], b.shape[1:], strict=True))
        result.append(TensorSpec(name=name, dtype=from_torch(a.dtype).triton, shape=dims))
    return tuple(result)


def _export_onnx(
    model: Any,
    example: tuple[Any, ...],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    path: Path,
    opset: int,
) -> None:
    import torch

    axes: dict[str, dict[int, str]] = {}
    for spec in (*inputs, *outputs):
        axes[spec.name] = {0: "batch"} | {
            i + 1: f"{spec.name}_{i + 1}" for i, d in enumerate(spec.shape) if d == -1
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def _export_torchscript(model: Any, example: tuple[Any, ...], path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)  # type: ignore[no-untyped-call]
    traced.save(str(path))


def _runner(
    fmt: str, path: Path, outputs: Sequence[TensorSpec], specs: Sequence[TensorSpec]
) -> Any:
    names = [o.name for o in outputs]
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run_onnx(inputs: dict[str, Array]) -> dict[str, Array]:
            return dict(zip(names, session.run(names, inputs), strict=True))

        return run_onnx
    import torch

    module = torch.jit.load(str(path))  # type: ignore[no-untyped-call]

    def run_ts(inputs: dict[str, Array]) -> dict[str, Array]:
        with torch.no_grad():
            result = _as_tuple(module(*(torch.from_numpy(inputs[s.name]) for s in specs)))
        return {n: t.numpy() for n, t in zip(names, result, strict=True)}

    return run_ts


def export(
    factory: str,
    inputs: Sequence[tuple[TensorSpec, tuple[int, ...]]],
    out_dir: Path,
    *,
    formats: Sequence[str] = ("onnx", "torchscript"),
    max_batch_size: int = 64,
    output_names: Sequence[str] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    opset: int = DEFAULT_OPSET,
) -> Manifest:
    """Export ``factory()``'s model, check parity and write ``manifest.json`` into ``out_dir``.

    Raises :class:`ParityError` (after writing the manifest) when any output of any format is off.
    """
    import torch

    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ExportError(f"formats {sorted(unknown) or '[]'}: choose from {sorted(FORMATS)}")
    if max_batch_size < 1:
        raise ExportError(f"max batch size must be at least 1, not {max_batch_size}")
    if opset < 17:
        raise ExportError(f"opset {opset}: tritonpipe exports with opset 17 or newer")
    specs = [spec for spec, _ in inputs]
    sample = _Sample(specs, [shape for _, shape in inputs])
    raw = _load_model(factory)
    model = _wrap(raw)
    try:
        names = output_names or _dict_keys(raw, specs, sample)
        outputs = _output_specs(model, specs, sample, names)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"model failed on sample inputs: {type(exc).__name__}: {exc}") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    example = tuple(torch.from_numpy(v) for v in sample.make(2, seed=1).values())
    manifest = Manifest(
        inputs=tuple(specs),
        outputs=outputs,
        max_batch_size=max_batch_size,
        opset=opset if "onnx" in formats else None,
        torch_version=torch.__version__,
        factory=factory,
        atol=atol,
        rtol=rtol,
    )
    sizes = parity_batch_sizes(max_batch_size)
    batches = {bs: sample.make(bs, seed=100 + bs) for bs in sizes}
    eager = _eager(model, specs, [o.name for o in outputs])
    for fmt in formats:
        path = out_dir / FORMATS[fmt]
        try:
            if fmt == "onnx":
                _export_onnx(model, example, specs, outputs, path, opset)
            else:
                _export_torchscript(model, example, path)
        except Exception as exc:
            raise ExportError(f"{fmt} export failed: {type(exc).__name__}: {exc}") from exc
        manifest.artifacts[fmt] = {"file": path.name, "sha256": sha256(path)}
        runner = _runner(fmt, path, outputs, specs)
        manifest.parity[fmt] = measure(
            eager, runner, batches, [o.name for o in outputs], atol=atol, rtol=rtol
        )
    manifest.write(out_dir)
    _raise_on_failure(manifest)
    return manifest


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
    return f"  {fmt} output '{name}': {what} ({limits})"
