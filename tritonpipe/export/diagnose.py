"""``torch.export`` with errors a user can act on: which input dim, which line of their model.

Tracing (``torch.jit.trace``, the legacy ONNX exporter) silently bakes in whatever a sample makes
true: a length, a branch taken, a tensor read as a Python number. ``torch.export`` refuses instead;
this module turns its refusals into one message naming the input, the dimension and the line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from warnings import WarningMessage

from tritonpipe.errors import ExportError
from tritonpipe.export.inputs import Dim, ExportInput, dim_groups

_GUARD_LOGGER = "torch.fx.experimental.symbolic_shapes"
_CALL_RE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in \S+\n\s*(?P<code>.*)')
_ARG_RE = re.compile(r"L\['args'\]\[(?P<arg>\d+)\]\.size\(\)\[(?P<dim>\d+)\]")
_VIOLATED_RE = re.compile(r"Constraints violated \((?P<names>[^)]*)\)")


@dataclass(frozen=True, kw_only=True)
class DynamicShapes:
    """``dynamic_shapes`` for torch.export, and which input dim each named ``Dim`` stands for."""

    spec: tuple[Any, ...]
    dims: Mapping[str, tuple[str, int]]  # Dim name -> (input, dim with batch as 0)
    inputs: tuple[str, ...]  # names in the order the model takes them


def dynamic_shapes(
    inputs: Sequence[ExportInput], max_batch_size: int, groups: Sequence[Sequence[Dim]]
) -> DynamicShapes:
    """The batch dim (1..max) and one ``Dim`` per group of dynamic dims (see ``dim_groups``)."""
    from torch.export import Dim as TorchDim

    batch = TorchDim("batch", min=1, max=max_batch_size) if max_batch_size > 1 else None
    position = {i.spec.name: n for n, i in enumerate(inputs)}
    dims: dict[str, tuple[str, int]] = {}
    axes: list[dict[int, Any]] = [{0: batch} if batch is not None else {} for _ in inputs]
    for group in groups:
        first, dim = group[0]
        name = f"input{position[first]}_dim{dim}"
        shared = TorchDim(name, min=1)
        dims[name] = group[0]
        for member, j in group:
            axes[position[member]][j] = shared
    # The wrapped model takes *args, which torch.export sees as one tuple argument.
    spec = (tuple(a or None for a in axes),)
    return DynamicShapes(spec=spec, dims=dims, inputs=tuple(position))


def equal_dims(exc: BaseException, shapes: DynamicShapes) -> list[tuple[Dim, Dim]]:
    """Pairs of dims torch.export found must be equal (its ``a = b`` suggested fixes)."""
    fixes = str(exc).split("Suggested fixes:", 1)[-1] if "Suggested fixes:" in str(exc) else ""
    pairs = []
    for line in fixes.split("\n\n")[0].splitlines():
        a, _, b = line.strip().partition(" = ")
        if a in shapes.dims and b in shapes.dims:
            pairs.append((shapes.dims[a], shapes.dims[b]))
    return pairs


def _user_frame(filename: str) -> bool:
    """A frame in the user's code rather than in torch or the standard library."""
    import torch

    torch_dir = str(Path(torch.__file__).parent)
    return not filename.startswith(torch_dir) and "/lib/python3" not in filename


class _GuardLog(logging.Handler):
    """Collects where shape guards were added, as ``file:line `code```, in the user's code."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.sites: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "[guard added]" not in str(record.msg):
            return
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            frame = getattr(arg, "framework_loc", None)
            if frame is not None and _user_frame(str(getattr(frame, "filename", ""))):
                guard = args[1] if len(args) > 1 else "?"
                site = f"{frame.filename}:{frame.lineno} `{(frame.line or '').strip()}` ({guard})"
                if site not in self.sites:
                    self.sites.append(site)


@contextmanager
def _guards() -> Iterator[_GuardLog]:
    logger = logging.getLogger(_GUARD_LOGGER)
    handler = _GuardLog()
    saved = (logger.level, logger.propagate, logger.handlers)
    # Only ours while exporting: torch's own handlers would print every guard at INFO.
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.setLevel(saved[0])
        logger.propagate, logger.handlers = saved[1], saved[2]


# Loggers that print a traceback of their own when a capture fails; the ExportError says it once.
_NOISY_LOGGERS = ("torch._subclasses.fake_tensor",)


@contextmanager
def _silenced() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    saved = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, saved, strict=True):
            logger.disabled = disabled


def export_program(
    model: Any, example: tuple[Any, ...], inputs: Sequence[ExportInput], max_batch_size: int
) -> tuple[Any, list[list[Dim]], ExportError | None]:
    """``torch.export.export`` the model: (program, dim groups, None), or (None, dim groups, an
    :class:`ExportError` explaining the refusal). Dims torch.export finds must be equal are
    grouped and the export retried."""
    import torch

    equal: list[tuple[Dim, Dim]] = []
    while True:
        groups = dim_groups(inputs, equal)
        shapes = dynamic_shapes(inputs, max_batch_size, groups)
        # torch prints the partial graph to stderr when it gives up; the message says what matters.
        with _guards() as guards, _silenced(), contextlib.redirect_stderr(io.StringIO()):
            try:
                return torch.export.export(model, example, dynamic_shapes=shapes.spec), groups, None
            except Exception as exc:
                found = [p for p in equal_dims(exc, shapes) if p not in equal]
                if not found:
                    error = ExportError(describe(exc, shapes, guards.sites))
                    error.__cause__ = exc
                    return None, groups, error
                equal.extend(found)


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n")[0].strip()


def _readable(text: str, shapes: DynamicShapes) -> str:
    """torch's names for dims (``input0_dim1``, ``L['args'][0].size()[1]``) as ``x.shape[1]``."""
    inputs = shapes.inputs
    for dim_name, (name, dim) in shapes.dims.items():
        text = text.replace(f"{dim_name} = ", "").replace(dim_name, f"{name}.shape[{dim}]")

    def arg(match: re.Match[str]) -> str:
        index = int(match["arg"])
        name = inputs[index] if index < len(inputs) else f"input {index}"
        return f"{name}.shape[{match['dim']}]"

    return _ARG_RE.sub(arg, text)


def describe(exc: BaseException, shapes: DynamicShapes, sites: Sequence[str]) -> str:
    """One message for a torch.export failure; see the module docstring."""
    text, dims = str(exc), shapes.dims
    violated = _VIOLATED_RE.search(text)
    if violated is not None:
        names = [n.strip() for n in violated["names"].split(",")]
        which = ", ".join(
            f"input '{dims[n][0]}' dim {dims[n][1]}" if n in dims else f"the {n} dim" for n in names
        )
        reasons = [
            _readable(line.strip().lstrip("- ").split(". ")[0], shapes)
            for line in text.split("Suggested fixes:")[0].splitlines()
            if line.strip().startswith("- ")
        ]
        message = f"{which} is declared dynamic, but torch.export found the model fixes it"
        message += "".join(f"\n  {reason}" for reason in reasons)
        if sites:
            message += "\n  guards from the model's code:" + "".join(f"\n    {s}" for s in sites)
        return message + "\n  (tracing would have baked this in; declare the dim static instead)"
    call = _CALL_RE.search(text)
    if call is not None and type(exc).__name__.startswith("GuardOnDataDependent"):
        return (
            f"the model branches on tensor values at {call['file']}:{call['line']} "
            f"`{call['code'].strip()}`: torch.export cannot capture that, and tracing would "
            "bake in the value seen in the sample"
        )
    where = f" at {call['file']}:{call['line']} `{call['code'].strip()}`" if call else ""
    return f"torch.export failed{where}: {type(exc).__name__}: {_first_paragraph(text)}"


def trace_warnings(caught: Sequence[WarningMessage]) -> list[str]:
    """TracerWarnings raised from the user's code: each is something the trace baked in."""
    found = []
    for w in caught:
        if w.category.__name__ == "TracerWarning" and _user_frame(w.filename):
            first = str(w.message).split(". ")[0]
            found.append(f"{w.filename}:{w.lineno}: {first}")
    return list(dict.fromkeys(found))
