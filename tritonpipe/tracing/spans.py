"""Spans of a pipeline's steps: one per step run (stage, lookup, model) and one per prediction
log write, named and attributed the same in every runner (Triton, in-process, batch, stream)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonpipe.tracing.context import SpanContext

Attribute = str | bool | int | float

# OTLP span kinds.
INTERNAL = 1
SERVER = 2
CLIENT = 3  # a call to a server (a batch job's or stream worker's request to Triton)

# A feature lookup is a generated stage: ``lookup_<name>.py``, function ``lookup``
# (tritonpipe.features.transform.desugar_lookup).
_LOOKUP_FUNCTION = "lookup"


@dataclass
class Span:
    """One finished span, as the exporter sends it."""

    name: str
    context: SpanContext
    parent_id: bytes  # b"" for a trace's root
    start_ns: int
    end_ns: int
    attributes: dict[str, Attribute] = field(default_factory=dict)
    error: str | None = None
    kind: int = INTERNAL


def step_kind(step: Any) -> str:
    """``stage``, ``lookup`` (a feature lookup) or ``model`` (onnx, torchscript, aoti)."""
    if step.kind != "stage":
        return "model"
    if getattr(step, "function", None) == _LOOKUP_FUNCTION and Path(
        getattr(step, "file", "")
    ).name.startswith("lookup_"):
        return "lookup"
    return "stage"


def step_span(
    step: Any,
    position: int,
    parent: SpanContext,
    start_ns: int,
    end_ns: int,
    error: BaseException | None,
    *,
    pipeline: str,
    runner: str,
    requests: int,
) -> Span:
    """The span of one step run under ``parent``; ``requests``: how many requests the (merged)
    batch served, the same run being a child of each traced one."""
    kind = step_kind(step)
    attributes: dict[str, Attribute] = {
        "tritonpipe.pipeline": pipeline,
        "tritonpipe.runner": runner,
        "tritonpipe.step": step.name,
        "tritonpipe.step.kind": kind,
        "tritonpipe.step.position": position,
        "tritonpipe.batch.requests": requests,
    }
    if kind == "model":
        attributes["tritonpipe.model.format"] = step.kind
    message = None if error is None else f"{type(error).__name__}: {error}"[:500]
    return Span(
        f"{kind} {step.name}",
        parent.child(),
        parent.span_id,
        start_ns,
        end_ns,
        attributes,
        message,
    )


def log_span(
    parent: SpanContext,
    start_ns: int,
    end_ns: int,
    error: BaseException | None,
    *,
    pipeline: str,
    runner: str,
    sink: str,
    requests: int,
) -> Span:
    """The span of a prediction-log write (``log predictions``)."""
    attributes: dict[str, Attribute] = {
        "tritonpipe.pipeline": pipeline,
        "tritonpipe.runner": runner,
        "tritonpipe.step": "predictions",
        "tritonpipe.step.kind": "log",
        "tritonpipe.log.sink": sink,
        "tritonpipe.batch.requests": requests,
    }
    message = None if error is None else f"{type(error).__name__}: {error}"[:500]
    return Span(
        "log predictions", parent.child(), parent.span_id, start_ns, end_ns, attributes, message
    )


def positions(steps: Sequence[Any]) -> dict[int, int]:
    """Each step object's place in its plan, by identity."""
    return {id(s): i for i, s in enumerate(steps)}
