"""A minimal OTLP/HTTP trace receiver on loopback: what a collector would get, decoded.

For tests, benchmarks and checking a setup without a collector: it accepts ``POST /v1/traces``
in both OTLP/HTTP encodings (protobuf, as tritonpipe sends; JSON, as Triton's own exporter
sends), decodes them with ``opentelemetry-proto`` and keeps the spans in memory.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

_IDS = ("traceId", "spanId", "parentSpanId")


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as a collector stores it: ids in hex, attributes as plain values."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    service: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    kind: int = 0  # OTLP SpanKind: 1 internal, 2 server, 3 client (0: unspecified)


def _plain(value: Any) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def _json_ids(data: Any) -> Any:
    """OTLP JSON writes ids as hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(data, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in _IDS and isinstance(v, str)
            else _json_ids(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_json_ids(v) for v in data]
    return data


def decode(body: bytes, content_type: str) -> list[ReceivedSpan]:
    """The spans of one ``ExportTraceServiceRequest`` (protobuf, or OTLP JSON)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    request = trace_service_pb2.ExportTraceServiceRequest()
    if "json" in content_type:
        json_format.ParseDict(_json_ids(json.loads(body)), request, ignore_unknown_fields=True)
    else:
        request.ParseFromString(body)
    spans = []
    for resource in request.resource_spans:
        attrs = {a.key: _plain(a.value) for a in resource.resource.attributes}
        service = str(attrs.get("service.name", ""))
        for scope in resource.scope_spans:
            for span in scope.spans:
                error = (span.status.message or "error") if span.status.code == 2 else None
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        service=service,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={a.key: _plain(a.value) for a in span.attributes},
                        error=error,
                        kind=span.kind,
                    )
                )
    return spans


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` spans sent to ``receiver.url`` land in
    ``receiver.spans()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.requests = 0
        self.rejected = 0  # bodies that did not decode (answered 400)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    spans = decode(body, self.headers.get("Content-Type", ""))
                except Exception:
                    receiver.rejected += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver._spans.extend(spans)
                    receiver.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1/traces"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (again: nothing); a sender then finds no collector."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def wait_for(
        self,
        done: Callable[[list[ReceivedSpan]], bool],
        trace_id: str | None = None,
        timeout_s: float = 30.0,
    ) -> list[ReceivedSpan]:
        """The spans (of ``trace_id``) once ``done(spans)`` holds, or when ``timeout_s`` ran out."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans(trace_id)
            if done(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)
