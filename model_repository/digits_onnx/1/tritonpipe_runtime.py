"""The pipeline runtime: runs a compiled plan's steps in sequence on batched numpy arrays.

One code path for every runner. It is copied verbatim (as ``tritonpipe_runtime.py``) beside
``model.py`` into each generated Python model, where Triton feeds it merged dynamic batches, and it
is imported as ``tritonpipe.backend.runtime`` by the in-process runner (``tritonpipe.pipeline``).
So it imports only numpy and the standard library; onnxruntime and torch load when a step needs
them.

A plan (``plan.json``) lists steps. Each step is a user stage (``file.py`` + function), or an
exported model (``onnx``, ``torchscript``, ``aoti``), with its own tensor names bound to pipeline
tensor names. Steps run in order on one batch; every output is checked against its declaration
(present, one row per input row, declared dims, a dtype it converts to without loss).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np

Arrays = dict[str, "np.ndarray[Any, Any]"]
StepFn = Callable[[Arrays], Arrays]
# Called after every step run: (step, indexes of the requests it served, start and end in
# nanoseconds since the epoch, the exception it raised or None). Tracing builds spans from it.
StepHook = Callable[["Step", Sequence[int], int, int, "BaseException | None"], None]

PLAN_FILE = "plan.json"
# Exceptions a stage raises about its input: the caller's fault, answered as invalid-argument.
CALLER_ERRORS = (ValueError, TypeError, KeyError, IndexError)
NUMPY_TYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "float32",
    "BYTES": "object",
}
# The numpy dtype an output of each declared type must have to pass unconverted (BYTES outputs
# may be any string kind and are always converted to object).
DTYPES = {k: np.dtype(v) for k, v in NUMPY_TYPES.items() if k not in ("BYTES", "BF16")}


class StepFailed(Exception):
    """A step could not produce its outputs for a batch.

    ``invalid`` marks the caller's fault (bad input: invalid-argument), otherwise the step itself
    failed (internal). ``trace`` holds the full traceback for the server log; ``detail`` what
    the failing library said, which the served model logs but never sends to the client (it
    may name the exporting machine's files and the graph's nodes).
    """

    def __init__(self, message: str, *, invalid: bool, trace: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.invalid = invalid
        self.trace = trace
        self.detail = detail


@dataclass(frozen=True)
class Decl:
    """One tensor of a step: its own name, the pipeline tensor bound to it, dtype and dims."""

    name: str
    tensor: str
    dtype: str
    shape: tuple[int, ...]
    low: float | None = None  # a plan input's declared range, both ends inclusive
    high: float | None = None
    allow_nan: bool = False  # a float plan input that takes NaN and +/-Inf
    categories: frozenset[bytes] | None = None  # a BYTES plan input's declared categories

    @classmethod
    def parse(cls, data: dict[str, Any], contract: dict[str, Any] | None = None) -> Decl:
        """A declaration; for a plan input, with its value rules from the plan's ``contract``
        (the records contract's options: ``ranges`` inclusive, ``allow_nan``)."""
        tensor = data.get("tensor", data["name"])
        low, high = ((contract or {}).get("ranges") or {}).get(tensor) or (None, None)
        known = ((contract or {}).get("categories") or {}).get(tensor)
        return cls(
            data["name"],
            tensor,
            data["dtype"],
            tuple(data["shape"]),
            low,
            high,
            tensor in ((contract or {}).get("allow_nan") or ()),
            None if known is None else frozenset(str(c).encode() for c in known),
        )

    def describe(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


@dataclass
class Step:
    name: str
    kind: str
    inputs: list[Decl]
    outputs: list[Decl]
    run: StepFn
    file: str = ""  # the plan's file and function (a stage's), which tracing names kinds by
    function: str = ""
    executions: int = 0
    requests: int = 0
    nanoseconds: int = 0

    @property
    def what(self) -> str:
        return f"{'stage' if self.kind == 'stage' else 'model'} '{self.name}'"


def _failing_frame(exc: BaseException) -> str:
    """``file:line in function`` of the deepest frame outside Python's and the packages' code."""
    frames = traceback.extract_tb(exc.__traceback__)
    library = (sys.prefix, sys.base_prefix, "site-packages", "dist-packages", __file__)
    own = [f for f in frames if not any(p and p in f.filename for p in library)]
    if not (own or frames):
        return "unknown location"
    frame = (own or frames)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def _load_stage(folder: Path, file: str, function: str, kwargs: dict[str, Any]) -> StepFn:
    path = folder / file
    name = f"tritonpipe_stage_{path.stem}_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(name)
    if module is None:
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))  # the stage may import its neighbours
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    func = getattr(module, function)

    def run(inputs: Arrays) -> Arrays:
        return dict(func(**inputs, **kwargs))

    return run


def _load_onnx(path: Path, gpu: bool, device_id: int, threads: int | None) -> StepFn:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        # Triton runs one instance per thread of work; onnxruntime's own pool would oversubscribe.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers: list[Any] = ["CPUExecutionProvider"]
    if gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
    session = ort.InferenceSession(str(path), options, providers=providers)
    names = [o.name for o in session.get_outputs()]

    def run(inputs: Arrays) -> Arrays:
        return dict(zip(names, session.run(names, inputs), strict=True))

    return run


def _torch_device(gpu: bool, device_id: int, threads: int | None) -> Any:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.device(f"cuda:{device_id}" if gpu and torch.cuda.is_available() else "cpu")


def _torch_step(
    call: Callable[..., Any], device: Any, inputs: list[str], outputs: list[str]
) -> StepFn:
    import torch

    def run(arrays: Arrays) -> Arrays:
        with torch.inference_mode():
            result = call(*(torch.from_numpy(arrays[n]).to(device) for n in inputs))
        if isinstance(result, dict):
            result = [result[n] for n in outputs]
        if not isinstance(result, (tuple, list)):
            result = (result,)
        return {n: t.cpu().numpy() for n, t in zip(outputs, result, strict=True)}

    return run


def _load_torchscript(
    path: Path,
    gpu: bool,
    device_id: int,
    threads: int | None,
    inputs: list[str],
    outputs: list[str],
) -> StepFn:
    import torch

    device = _torch_device(gpu, device_id, threads)
    module = torch.jit.load(str(path), map_location=device).eval()
    return _torch_step(module, device, inputs, outputs)


def _load_aoti(
    path: Path,
    gpu: bool,
    device_id: int,
    threads: int | None,
    inputs: list[str],
    outputs: list[str],
) -> StepFn:
    """An AOTInductor ``.pt2`` package. Its code was compiled for one device: a CPU package runs
    on CPU whatever the instance kind, a CUDA one on this instance's GPU."""
    import torch._inductor

    _torch_device(gpu, device_id, threads)  # caps torch's threads
    package = torch._inductor.aoti_load_package(str(path), device_index=device_id if gpu else -1)
    compiled_for = package.get_metadata().get("AOTI_DEVICE_KEY", "cpu")
    device = torch.device(f"cuda:{device_id}" if compiled_for == "cuda" else "cpu")
    return _torch_step(package, device, inputs, outputs)


def _load_step(
    folder: Path, data: dict[str, Any], gpu: bool, device_id: int, threads: int | None
) -> Step:
    inputs = [Decl.parse(d) for d in data["inputs"]]
    outputs = [Decl.parse(d) for d in data["outputs"]]
    kind, file = data["kind"], data["file"]
    in_names, out_names = [d.name for d in inputs], [d.name for d in outputs]
    if kind == "stage":
        run = _load_stage(folder, file, data["function"], data.get("kwargs", {}))
    elif kind == "onnx":
        run = _load_onnx(folder / file, gpu, device_id, threads)
    elif kind == "torchscript":
        run = _load_torchscript(folder / file, gpu, device_id, threads, in_names, out_names)
    elif kind == "aoti":
        run = _load_aoti(folder / file, gpu, device_id, threads, in_names, out_names)
    else:
        raise ValueError(f"step '{data['name']}': unknown kind '{kind}'")
    return Step(data["name"], kind, inputs, outputs, run, file, data.get("function", ""))


def _conform(step: Step, decl: Decl, value: Any, rows: int | None) -> np.ndarray[Any, Any]:
    """The output as declared, or StepFailed: only lossless casts, declared dims, one row each."""
    array = np.asarray(value)
    # The common case, checked first: already the declared dtype, rows and fixed dims.
    target = DTYPES.get(decl.dtype)
    if target is not None and array.dtype == target:
        if rows is None:
            if array.shape == decl.shape:
                return array
        elif array.ndim and len(array) == rows and array.shape[1:] == decl.shape:
            return array
    return _conform_slow(step, decl, array, rows)


def _conform_slow(
    step: Step, decl: Decl, array: np.ndarray[Any, Any], rows: int | None
) -> np.ndarray[Any, Any]:
    where = f"{step.what} output '{decl.name}'"
    if decl.dtype == "BYTES":
        if array.dtype.kind not in "OSU":
            raise StepFailed(f"{where} is declared BYTES but is {array.dtype}", invalid=False)
        array = array.astype(object, copy=False)
    else:
        target = np.dtype(NUMPY_TYPES[decl.dtype])
        if array.dtype != target:
            if not np.can_cast(array.dtype, target, "same_kind") or not _fits(array, target):
                raise StepFailed(
                    f"{where} is declared {decl.dtype} but is {array.dtype}; converting would "
                    "lose data (return the declared dtype)",
                    invalid=False,
                )
            array = array.astype(target)
    dims = array.shape[1:] if rows is not None else array.shape
    if rows is not None and (array.ndim == 0 or len(array) != rows):
        got = "a scalar" if array.ndim == 0 else f"{len(array)} rows"
        raise StepFailed(f"{where} has {got} for {rows} input rows", invalid=False)
    if len(dims) != len(decl.shape) or any(
        d not in (-1, g) for d, g in zip(decl.shape, dims, strict=True)
    ):
        raise StepFailed(
            f"{where} has dims {list(dims)} but is declared {decl.describe()}", invalid=False
        )
    return array


def _fits(array: np.ndarray[Any, Any], target: np.dtype[Any]) -> bool:
    """An integer array narrowed to ``target`` keeps every value (no truncation)."""
    if target.kind not in "iu" or array.dtype.kind not in "iub" or array.size == 0:
        return True
    info = np.iinfo(target)
    return bool(array.min() >= info.min and array.max() <= info.max)


def refusal(decls: Sequence[Decl], arrays: Arrays) -> str | None:
    """The records contract's verdict on a request's values, before any step runs: the first
    NaN/Inf of a float input that does not take them, value outside an input's declared range,
    or string not among a BYTES input's declared categories, as the contract words it
    (``input 'cat': 50 is outside [0, 49]``). None: all good.
    Vectorised: one pass over each checked array."""
    for decl in decls:
        array = arrays.get(decl.tensor)
        if array is None or array.size == 0:
            continue
        if decl.categories is not None and array.dtype.kind in "OSU":
            for value in array.flat:
                raw = value if isinstance(value, bytes) else str(value).encode()
                if raw not in decl.categories:
                    shown = _show(raw.decode(errors="replace"))
                    return f"input '{decl.tensor}': unknown category {shown}"
            continue
        if array.dtype.kind not in "fiu":
            continue
        if array.dtype.kind == "f" and not decl.allow_nan:
            finite = np.isfinite(array)
            if not finite.all():
                value = array[~finite].flat[0]
                return f"input '{decl.tensor}': {_show(value)} is not a finite number"
        if decl.low is None and decl.high is None:
            continue
        low = -np.inf if decl.low is None else decl.low
        high = np.inf if decl.high is None else decl.high
        outside = (array < low) | (array > high)
        if outside.any():
            value = array[outside].flat[0]
            return (
                f"input '{decl.tensor}': {_show(value)} is outside "
                f"[{_bound(decl.low)}, {_bound(decl.high)}]"
            )
    return None


def _show(value: Any) -> str:
    """A value as the records contract shows it (tritonpipe.records.rules.show)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bound(value: float | None) -> str:
    if value is None:
        return "-inf"
    return str(int(value)) if float(value).is_integer() else str(value)


def missing_output(step: Step, decl: Decl, out: Arrays) -> StepFailed:
    """A declared output the step did not return, naming what it did return."""
    got = ", ".join(f"'{n}'" for n in out) or "nothing"
    return StepFailed(
        f"{step.what} produced no output '{decl.name}' (it returned {got})", invalid=False
    )


def model_failure(step: Step, exc: BaseException, trace: str) -> StepFailed:
    """An unexpected error inside an exported model (onnxruntime's, a TorchScript traceback):
    one line for the caller; what the library said and the traceback only in ``detail`` and
    ``trace``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = lines[-1] if lines else ""
    detail = f"{type(exc).__name__}: {said[:500]}" if said else type(exc).__name__
    message = f"{step.what} failed ({type(exc).__name__}) on this request"
    return StepFailed(message, invalid=False, trace=trace, detail=detail)


class Runner:
    """Runs a plan on batches: ``run`` for one batch, ``run_requests`` for a dynamic batch.

    ``threads`` caps onnxruntime's and torch's intra-op threads (None: the libraries' default).
    """

    def __init__(
        self,
        plan: dict[str, Any],
        folder: Path,
        *,
        gpu: bool = False,
        device_id: int = 0,
        threads: int | None = None,
    ) -> None:
        self.name: str = plan["name"]
        self.batched: bool = plan["max_batch_size"] > 0
        self.max_batch_size: int = plan["max_batch_size"]
        self.inputs = [Decl.parse(d, plan.get("contract")) for d in plan["inputs"]]
        self.outputs = [Decl.parse(d) for d in plan["outputs"]]
        self.steps = [_load_step(folder, s, gpu, device_id, threads) for s in plan["steps"]]
        # Pipeline tensors returned besides the outputs (e.g. the feature vector a prediction log
        # records), split per request like them.
        self.keep: list[str] = []
        self.on_step: StepHook | None = None
        self._serving: Sequence[int] = (0,)  # the requests the running batch serves

    @classmethod
    def from_folder(cls, folder: Path, **options: Any) -> Runner:
        """The runner for a generated model's version folder (its ``plan.json``)."""
        return cls(json.loads((folder / PLAN_FILE).read_text()), folder, **options)

    def run(self, arrays: Arrays, requests: int = 1, *, checked: bool = False) -> Arrays:
        """Every step in order on one batch; the plan's outputs. Raises :class:`StepFailed`
        (invalid, before any step runs, for a value the plan's input rules refuse)."""
        if not checked:
            self._check(arrays)
        rows = _rows(arrays) if self.batched else None
        tensors = dict(arrays)
        hook = self.on_step
        for step in self.steps:
            args = {d.name: tensors[d.tensor] for d in step.inputs}
            wall = time.time_ns() if hook is not None else 0
            start = time.perf_counter_ns()
            error: BaseException | None = None
            try:
                out = self._call(step, args)
            except BaseException as exc:
                error = exc
                raise
            finally:  # a failed run took time too
                spent = time.perf_counter_ns() - start
                step.nanoseconds += spent
                step.executions += 1
                step.requests += requests
                if hook is not None:
                    hook(step, self._serving, wall, wall + spent, error)
            for decl in step.outputs:
                if decl.name not in out:
                    raise missing_output(step, decl, out)
                tensors[decl.tensor] = _conform(step, decl, out[decl.name], rows)
        out = {d.tensor: tensors[d.tensor] for d in self.outputs}
        for name in self.keep:
            if name in tensors:
                out[name] = tensors[name]
        return out

    def _check(self, arrays: Arrays) -> None:
        reason = refusal(self.inputs, arrays)
        if reason is not None:
            raise StepFailed(reason, invalid=True)

    @staticmethod
    def _call(step: Step, args: Arrays) -> Arrays:
        try:
            return step.run(args)
        except StepFailed:
            raise
        except Exception as exc:
            where = _failing_frame(exc)
            trace = traceback.format_exc()
            if step.kind == "stage" and isinstance(exc, CALLER_ERRORS):
                message = f"{step.what} rejected the request: {exc} (at {where})"
                raise StepFailed(message, invalid=True, trace=trace) from exc
            if step.kind != "stage":
                raise model_failure(step, exc, trace) from exc
            message = f"{step.what} failed: {type(exc).__name__}: {exc} (at {where})"
            raise StepFailed(message, invalid=False, trace=trace) from exc

    def run_requests(self, requests: Sequence[Arrays]) -> list[Arrays | StepFailed]:
        """Run a dynamic batch: requests of equal shapes are merged, run once and split back.

        When a merged run fails, its requests run alone, so one bad request fails alone.
        """
        results: list[Arrays | StepFailed | None] = [None] * len(requests)
        valid = []
        for i, request in enumerate(requests):  # a refused value fails its request alone
            try:
                self._check(request)
                valid.append(i)
            except StepFailed as exc:
                results[i] = exc
        try:
            for members in self._groups(requests, valid):
                if len(members) > 1:
                    self._serving = members
                    try:
                        for i, out in zip(
                            members, self._run_merged([requests[i] for i in members]), strict=True
                        ):
                            results[i] = out
                        continue
                    except StepFailed:
                        pass  # each request runs alone below and gets its own error
                for i in members:
                    self._serving = (i,)
                    try:
                        results[i] = self.run(requests[i], checked=True)
                    except StepFailed as exc:
                        results[i] = exc
        finally:
            self._serving = (0,)
        return [r for r in results if r is not None]

    def _groups(self, requests: Sequence[Arrays], members: list[int]) -> list[list[int]]:
        if not self.batched or len(members) < 2:
            return [[i] for i in members]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i in members:
            arrays = requests[i]
            key = tuple((n, a.dtype, a.shape[1:]) for n, a in sorted(arrays.items()))
            groups.setdefault(key, []).append(i)
        return list(groups.values())

    def _run_merged(self, requests: list[Arrays]) -> list[Arrays]:
        sizes = [_rows(a) for a in requests]
        merged = {n: np.concatenate([a[n] for a in requests]) for n in requests[0]}
        out = self.run(merged, requests=len(requests), checked=True)
        ends = list(accumulate(sizes))
        return [
            {n: v[end - size : end] for n, v in out.items()}
            for size, end in zip(sizes, ends, strict=True)
        ]

    def take_timings(self) -> list[tuple[str, int, int, int]]:
        """(step, executions, requests, nanoseconds) since the last call; counters reset."""
        taken = [(s.name, s.executions, s.requests, s.nanoseconds) for s in self.steps]
        for s in self.steps:
            s.executions = s.requests = s.nanoseconds = 0
        return taken


def _rows(arrays: Arrays) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0
