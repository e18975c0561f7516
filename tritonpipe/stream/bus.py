"""The transport a stream worker sees: a Source of events and a Sink for predictions.

Neither is shaped like one bus. A Source hands out messages, says how often each was delivered
and acknowledges them; a Sink writes outputs keyed by event id (a second write of the same id is
a no-op) and dead letters. Redis Streams, NATS JetStream and Kafka implement both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Message:
    """One event as delivered: the bus's own id (for acks), its payload and delivery count.

    ``refused`` says why the bus entry holds no payload to decode (a Redis entry without the
    job's payload field); the worker dead-letters such a message with that reason."""

    id: str
    body: bytes
    deliveries: int = 1
    refused: str | None = None


@dataclass(frozen=True, kw_only=True)
class Output:
    """One prediction to write, keyed by the event id that produced it."""

    key: str
    body: bytes


class Source(ABC):
    """Events for one member of a consumer group; unacknowledged ones are delivered again."""

    @abstractmethod
    def read(self, max_events: int, wait_ms: int) -> list[Message]:
        """Up to ``max_events``: redeliveries (idle or timed-out) first, then new events;
        waits at most ``wait_ms`` when none is ready."""

    @abstractmethod
    def ack(self, messages: Sequence[Message]) -> None:
        """Mark messages done; call only after their outputs are written."""

    @abstractmethod
    def lag(self) -> int | None:
        """Events not yet delivered to the group (None when the bus cannot say)."""

    def partition_lag(self) -> dict[str, int]:
        """Lag per partition, on a bus that has partitions (Kafka); empty elsewhere."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class Sink(ABC):
    """Where predictions and dead letters go."""

    @abstractmethod
    def write(self, outputs: Sequence[Output]) -> list[bool]:
        """Write outputs idempotently by key; per output, whether it was new."""

    @abstractmethod
    def dead_letter(self, message: Message, reason: str) -> None:
        """Park an event that cannot be scored, with the reason."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class Publisher(ABC):
    """Adds encoded events to the input (replays, tests, producers)."""

    @abstractmethod
    def publish(self, bodies: Sequence[bytes]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""
