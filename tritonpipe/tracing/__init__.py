"""Traces per step: one OpenTelemetry span per pipeline step (stage, lookup, model) and per
prediction-log write, under the client's trace, from Triton and from the in-process runners.

Turned on by ``TRITONPIPE_TRACE_URL`` (or OpenTelemetry's ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
/ ``OTEL_EXPORTER_OTLP_ENDPOINT``): an OTLP/HTTP endpoint such as a collector's, Jaeger's or
Tempo's ``http://HOST:4318/v1/traces``. ``tritonpipe serve --trace-url URL`` sets it for the
models and starts Triton's own OpenTelemetry tracing to the same URL.
"""

from tritonpipe.tracing.context import SpanContext
from tritonpipe.tracing.export import OtlpExporter, url_from_env
from tritonpipe.tracing.receiver import OtlpReceiver, ReceivedSpan
from tritonpipe.tracing.spans import Span

__all__ = ["OtlpExporter", "OtlpReceiver", "ReceivedSpan", "Span", "SpanContext", "url_from_env"]
