"""W3C trace context: the ``traceparent`` a client sends, Triton hands a Python model, and every
span of a pipeline carries (https://www.w3.org/TR/trace-context/)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class SpanContext:
    """Where a span sits: its trace (16 bytes), its own id (8 bytes), and whether it is sampled."""

    trace_id: bytes
    span_id: bytes
    sampled: bool = True

    @classmethod
    def parse(cls, traceparent: str | None) -> SpanContext | None:
        """A ``traceparent`` header's context; None for a missing or malformed one, or the
        all-zero ids the standard calls invalid (a bad header starts a new trace, never fails)."""
        match = _TRACEPARENT.match((traceparent or "").strip().lower())
        if match is None or match.group(1) == "ff":
            return None
        trace_id, span_id = bytes.fromhex(match.group(2)), bytes.fromhex(match.group(3))
        if not any(trace_id) or not any(span_id):
            return None
        return cls(trace_id, span_id, bool(int(match.group(4), 16) & 1))

    @classmethod
    def from_carrier(cls, carrier: str | Mapping[str, Any] | None) -> SpanContext | None:
        """The context in a carrier: headers, or the JSON text Triton's Python backend returns
        from ``request.trace().get_context()`` (``{"traceparent": "00-..."}``)."""
        if isinstance(carrier, str):
            try:
                carrier = json.loads(carrier)
            except ValueError:
                return None
        if not isinstance(carrier, Mapping):
            return None
        value = carrier.get("traceparent")
        return cls.parse(value) if isinstance(value, str) else None

    @classmethod
    def new_trace(cls) -> SpanContext:
        return cls((random.getrandbits(128) or 1).to_bytes(16, "big"), new_span_id())

    def child(self) -> SpanContext:
        """A new span in the same trace."""
        return SpanContext(self.trace_id, new_span_id(), self.sampled)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{'01' if self.sampled else '00'}"


def new_span_id() -> bytes:
    """8 random bytes, never all zero (W3C: invalid). ``random``, not ``os.urandom``: ids need
    no secrecy, and this runs per span on the answer path (``random`` reseeds after a fork)."""
    return (random.getrandbits(64) or 1).to_bytes(8, "big")


def current() -> SpanContext | None:
    """The caller's active OpenTelemetry span, when opentelemetry-api is installed and a span is
    active: an in-process pipeline's spans then join the application's own trace."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return SpanContext(
        context.trace_id.to_bytes(16, "big"),
        context.span_id.to_bytes(8, "big"),
        bool(context.trace_flags & 1),
    )
