"""Sends spans to an OpenTelemetry collector over OTLP/HTTP (protobuf), off the answer path.

``submit`` only appends to a bounded queue (a full queue drops the spans and counts them); one
daemon thread sends them in batches of up to ``batch_size`` every ``interval_s``. A collector
that is down, slow or refusing costs the caller nothing: each failed send is counted, logged at
most once a minute, and its spans are dropped (no retries piling up behind a dead collector).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable
from typing import Any

from tritonpipe.errors import TritonPipeError
from tritonpipe.tracing.spans import Attribute, Span

log = logging.getLogger("tritonpipe.tracing")

URL_ENV = "TRITONPIPE_TRACE_URL"
SERVICE_ENV = "OTEL_SERVICE_NAME"
DEFAULT_SERVICE = "tritonpipe"


def url_from_env() -> str | None:
    """Where spans go: ``TRITONPIPE_TRACE_URL``, else OpenTelemetry's own variables
    (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``);
    None (tracing off) when none is set or ``OTEL_SDK_DISABLED=true``."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    url = os.environ.get(URL_ENV) or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if url:
        return url
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return f"{base.rstrip('/')}/v1/traces" if base else None


def _set(target: Any, value: Attribute) -> None:
    """``value`` into an OTLP ``AnyValue``."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    else:
        target.string_value = str(value)


def encode(spans: Iterable[Span], service: str) -> bytes:
    """An ``ExportTraceServiceRequest`` holding ``spans`` under one resource (``service.name``).
    Built field by field in place (``add``): several times faster than keyword constructors."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    request = trace_service_pb2.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    service_name = resource.resource.attributes.add()
    service_name.key = "service.name"
    service_name.value.string_value = service
    scope = resource.scope_spans.add()
    scope.scope.name = "tritonpipe"
    out = scope.spans
    for span in spans:
        item = out.add()
        item.trace_id = span.context.trace_id
        item.span_id = span.context.span_id
        item.parent_span_id = span.parent_id
        item.name = span.name
        item.kind = span.kind
        item.start_time_unix_nano = span.start_ns
        item.end_time_unix_nano = span.end_ns
        attributes = item.attributes
        for key, value in span.attributes.items():
            attribute = attributes.add()
            attribute.key = key
            _set(attribute.value, value)
        if span.error:
            item.status.code = 2  # STATUS_CODE_ERROR
            item.status.message = span.error
    return request.SerializeToString()  # type: ignore[no-any-return]


class OtlpExporter:
    """Batches spans to ``url`` (``http://HOST:4318/v1/traces``) from a daemon thread."""

    def __init__(
        self,
        url: str,
        *,
        service: str | None = None,
        queue_size: int = 4096,
        batch_size: int = 512,
        interval_s: float = 0.5,
        timeout_s: float = 2.0,
    ) -> None:
        try:
            import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401
        except ImportError as exc:
            raise TritonPipeError(
                f"tracing to {url} needs opentelemetry-proto: pip install 'tritonpipe[tracing]' "
                f"(or unset {URL_ENV})"
            ) from exc
        self.url = url
        self.service = service or os.environ.get(SERVICE_ENV) or DEFAULT_SERVICE
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.exported = 0  # spans a collector accepted
        self.dropped = 0  # spans lost: a full queue, or a failed send
        self.failures = 0  # sends that failed
        self._queue: deque[Span] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._warned = 0.0
        self._thread = threading.Thread(target=self._loop, name="tritonpipe-trace", daemon=True)
        self._thread.start()

    def submit(self, spans: list[Span]) -> None:
        """Queue ``spans``; never blocks, never raises (beyond the queue's room, spans drop)."""
        if not spans:
            return
        with self._lock:
            room = self.queue_size - len(self._queue)
            if room < len(spans):
                self.dropped += len(spans) - max(room, 0)
                spans = spans[: max(room, 0)]
            self._queue.extend(spans)
            self._idle.clear()
            if len(self._queue) >= self.batch_size:
                self._wake.set()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Send what is queued now; True once the queue is empty and the last send is done."""
        self._wake.set()
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout_s)

    def _take(self) -> list[Span]:
        with self._lock:
            count = min(len(self._queue), self.batch_size)
            return [self._queue.popleft() for _ in range(count)]

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            while batch := self._take():
                self._send(batch)
            with self._lock:
                if not self._queue:
                    self._idle.set()

    def _send(self, batch: list[Span]) -> None:
        try:
            body = encode(batch, self.service)
            request = urllib.request.Request(
                self.url,
                data=body,
                headers={"Content-Type": "application/x-protobuf"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
            self.exported += len(batch)
        except Exception as exc:  # a down or refusing collector: count, drop, carry on
            self.failures += 1
            self.dropped += len(batch)
            now = time.monotonic()
            if now - self._warned > 60:
                self._warned = now
                log.warning("trace export to %s failed (%s); spans dropped", self.url, exc)


_shared: dict[str, OtlpExporter] = {}
_shared_lock = threading.Lock()


def shared_exporter(url: str) -> OtlpExporter:
    """One exporter (one thread) per URL in this process, shared by every pipeline."""
    with _shared_lock:
        exporter = _shared.get(url)
        if exporter is None:
            exporter = _shared[url] = OtlpExporter(url)
            # A CLI run (batch, stream) ends with its last spans sent, at most 2 s late.
            atexit.register(exporter.flush, 2.0)
        return exporter
