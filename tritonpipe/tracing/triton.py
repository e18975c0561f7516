"""Step spans inside Triton's Python backend: the hook tritonpipe/backend/model.py calls when
``TRITONPIPE_TRACE_URL`` is set (``tritonpipe serve --trace-url`` sets it).

Triton (``--trace-config mode=opentelemetry``) traces a request under the client's W3C trace
context and hands the model its own model span's context (``request.trace().get_context()``);
each step's span is a child of that span, so a fused model's steps appear inside Triton's trace.
A request Triton does not trace (sampled out by its ``rate``) gets no step spans."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

from tritonpipe.tracing.context import SpanContext
from tritonpipe.tracing.export import URL_ENV, shared_exporter
from tritonpipe.tracing.steps import StepTracer


def request_context(request: Any) -> SpanContext | None:
    """The parent Triton gives a request's steps, or None (the request is not traced)."""
    try:
        trace = request.trace()
        return SpanContext.from_carrier(trace.get_context() if trace is not None else None)
    except Exception:  # a stub without trace support: no spans, never a failed request
        return None


class TritonTracing:
    def __init__(self, runner: Any, url: str) -> None:
        self.steps = StepTracer(runner, shared_exporter(url), label="triton")

    @classmethod
    def from_env(cls, runner: Any) -> TritonTracing | None:
        url = os.environ.get(URL_ENV)
        return cls(runner, url) if url else None

    def begin(self, requests: list[Any]) -> bool:
        return self.steps.begin([request_context(r) for r in requests])

    def log(self, sink: str, requests: int) -> AbstractContextManager[None]:
        """The ``log predictions`` span around a prediction-log write of the traced batch."""
        return self.steps.log(sink, requests)

    def end(self) -> None:
        self.steps.end()

    def close(self) -> None:
        self.steps.exporter.flush(2.0)
