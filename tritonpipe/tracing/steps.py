"""Step spans from a runner: the runtime calls ``on_step`` after each step run, and the tracer
turns it into one span under each traced request's parent span."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tritonpipe.tracing import context
from tritonpipe.tracing.context import SpanContext
from tritonpipe.tracing.export import OtlpExporter, shared_exporter, url_from_env
from tritonpipe.tracing.spans import Span, log_span, positions, step_span


class StepTracer:
    """Hooks a :class:`tritonpipe.backend.runtime.Runner`; ``begin`` names the parent span of
    each request of the next batch (None: not traced), ``end`` hands the spans to the exporter.

    One batch at a time per thread: the state is thread-local, so threads sharing a pipeline
    each trace their own calls."""

    def __init__(self, runner: Any, exporter: OtlpExporter, *, label: str) -> None:
        self.exporter = exporter
        self.pipeline: str = runner.name
        self.label = label
        self._positions = positions(runner.steps)
        self._state = threading.local()
        runner.on_step = self._on_step

    @property
    def _parents(self) -> list[SpanContext | None]:
        return getattr(self._state, "parents", [])

    @property
    def _spans(self) -> list[Span]:
        spans: list[Span] | None = getattr(self._state, "spans", None)
        if spans is None:
            spans = self._state.spans = []
        return spans

    def begin(self, parents: Sequence[SpanContext | None]) -> bool:
        """Trace the next batch's requests under ``parents``; False when none is traced."""
        self._state.parents = [p if p is not None and p.sampled else None for p in parents]
        self._state.spans = []
        return any(p is not None for p in self._state.parents)

    def _traced(self, served: Sequence[int]) -> list[SpanContext]:
        parents = self._parents
        unique: dict[bytes, SpanContext] = {}
        for i in served:
            parent = parents[i] if i < len(parents) else None
            if parent is not None:
                unique.setdefault(parent.span_id, parent)
        return list(unique.values())

    def _on_step(
        self, step: Any, served: Sequence[int], start: int, end: int, error: BaseException | None
    ) -> None:
        traced = self._traced(served)
        position = self._positions.get(id(step), -1)
        for parent in traced:
            self._spans.append(
                step_span(
                    step,
                    position,
                    parent,
                    start,
                    end,
                    error,
                    pipeline=self.pipeline,
                    runner=self.label,
                    requests=len(served),
                )
            )

    @contextmanager
    def log(self, sink: str, requests: int) -> Iterator[None]:
        """A ``log predictions`` span around a prediction-log write, under every traced request."""
        start = time.time_ns()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            end = time.time_ns()
            for parent in self._traced(range(requests)):
                self._spans.append(
                    log_span(
                        parent,
                        start,
                        end,
                        error,
                        pipeline=self.pipeline,
                        runner=self.label,
                        sink=sink,
                        requests=requests,
                    )
                )

    def add(self, span: Span) -> None:
        self._spans.append(span)

    def end(self) -> None:
        """Hand this batch's spans to the exporter (a queue append: no I/O here)."""
        spans = self._spans
        self._state.spans = []
        self._state.parents = []
        self.exporter.submit(spans)


class PipelineTracing:
    """Spans of an in-process pipeline's calls (``Pipeline``, and the batch and stream workers
    that run one): a root span per call, ``<label> <pipeline>``, with the step spans under it.

    The root's parent is the ``traceparent`` given, else the caller's active OpenTelemetry span
    (when opentelemetry-api is installed), else the call starts a new trace."""

    def __init__(self, runner: Any, exporter: OtlpExporter, *, label: str) -> None:
        self.steps = StepTracer(runner, exporter, label=label)

    @classmethod
    def from_env(cls, runner: Any, *, label: str) -> PipelineTracing | None:
        url = url_from_env()
        return None if url is None else cls(runner, shared_exporter(url), label=label)

    @contextmanager
    def call(self, traceparent: str | None, requests: int = 1) -> Iterator[SpanContext | None]:
        """Trace one call serving ``requests`` requests; yields its root span's context (None
        when the parent is not sampled: nothing is traced)."""
        parent = SpanContext.parse(traceparent) if traceparent else context.current()
        if parent is not None and not parent.sampled:
            yield None
            return
        root = parent.child() if parent is not None else SpanContext.new_trace()
        self.steps.begin([root] * requests)
        start = time.time_ns()
        error: BaseException | None = None
        try:
            yield root
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.steps.add(
                Span(
                    f"{self.steps.label} {self.steps.pipeline}",
                    root,
                    parent.span_id if parent is not None else b"",
                    start,
                    time.time_ns(),
                    {
                        "tritonpipe.pipeline": self.steps.pipeline,
                        "tritonpipe.runner": self.steps.label,
                        "tritonpipe.batch.requests": requests,
                    },
                    None if error is None else f"{type(error).__name__}: {error}"[:500],
                )
            )
            self.steps.end()
