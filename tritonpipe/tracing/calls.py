"""Client spans of the calls a batch job or stream worker makes to a Triton server.

Each call (one inference request, or one client call the client splits by the model's max batch
size) is a span of kind CLIENT, ``<label> <model>`` (``batch digits``, ``stream digits``), and
its W3C ``traceparent`` travels with the request (an HTTP header, gRPC metadata). Triton traces
a request carrying a context under it, and a fused model's step spans sit under Triton's, so the
trace reads: ``batch digits`` (client) > ``InferRequest`` > ``digits`` > ``stage preprocess``...

Configured as the in-process tracing is: ``TRITONPIPE_TRACE_URL`` (or OpenTelemetry's
``OTEL_EXPORTER_OTLP_*``) turns it on, ``OTEL_SERVICE_NAME`` names the service, and the spans
share the process's one exporter per URL (:func:`tritonpipe.tracing.export.shared_exporter`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from tritonpipe.tracing import context
from tritonpipe.tracing.context import SpanContext
from tritonpipe.tracing.export import OtlpExporter, shared_exporter, url_from_env
from tritonpipe.tracing.spans import CLIENT, Attribute, Span

TRACEPARENT = "traceparent"


class CallTracing:
    """``with tracing.call(rows) as headers: client.infer(model, arrays, headers=headers)``.

    The call's parent is the ``traceparent`` given, else the caller's active OpenTelemetry span
    (when opentelemetry-api is installed), else the call starts a new trace (its span is the
    root). ``call`` does no I/O: the span is queued for the exporter's thread, so it is safe on
    an event loop."""

    def __init__(
        self, exporter: OtlpExporter, *, label: str, model: str, server: str | None = None
    ) -> None:
        self.exporter = exporter
        self.label = label
        self.model = model
        self.server = server  # the server's URL, an attribute of every span

    @classmethod
    def from_env(cls, *, label: str, model: str, server: str | None = None) -> CallTracing | None:
        """None (tracing off) unless ``TRITONPIPE_TRACE_URL`` / ``OTEL_EXPORTER_OTLP_*`` is set."""
        url = url_from_env()
        if url is None:
            return None
        return cls(shared_exporter(url), label=label, model=model, server=server)

    @contextmanager
    def call(self, rows: int = 1, traceparent: str | None = None) -> Iterator[dict[str, str]]:
        """Trace one call sending ``rows`` rows; yields the headers to send with it
        (``{"traceparent": ...}``). A parent that is not sampled is passed on as it is, with no
        span of ours (W3C: the caller decided not to trace)."""
        parent = SpanContext.parse(traceparent) if traceparent else context.current()
        if parent is not None and not parent.sampled:
            yield {TRACEPARENT: parent.traceparent}
            return
        span = parent.child() if parent is not None else SpanContext.new_trace()
        start = time.time_ns()
        error: BaseException | None = None
        try:
            yield {TRACEPARENT: span.traceparent}
        except BaseException as exc:
            error = exc
            raise
        finally:
            attributes: dict[str, Attribute] = {
                "tritonpipe.pipeline": self.model,
                "tritonpipe.runner": self.label,
                "tritonpipe.call.rows": rows,
            }
            if self.server is not None:
                attributes["server.address"] = self.server
            self.exporter.submit(
                [
                    Span(
                        f"{self.label} {self.model}",
                        span,
                        parent.span_id if parent is not None else b"",
                        start,
                        time.time_ns(),
                        attributes,
                        None if error is None else f"{type(error).__name__}: {error}"[:500],
                        kind=CLIENT,
                    )
                ]
            )

    def flush(self, timeout_s: float = 2.0) -> None:
        """Send the queued spans now (a job's end: its last calls' spans leave with it)."""
        self.exporter.flush(timeout_s)
