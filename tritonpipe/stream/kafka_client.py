"""What the Kafka adapter is built from: aiokafka's connection options out of a job's ``bus:``,
an event loop on a thread (aiokafka is asyncio; the worker is not), topic creation, and the
per-partition offsets a worker may commit.

Kafka's consumer position is a cursor, not a set of acknowledgements: committing offset ``n``
says every event before ``n`` is done. So a partition's commit point is its lowest event still
in hand (handed out, not acknowledged), or, with none in hand, the next one to fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tritonpipe.errors import SpecError, TritonPipeError
from tritonpipe.stream.bus import Message
from tritonpipe.stream.config import KafkaBus

T = TypeVar("T")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_check_hostname")


def client_options(bus: KafkaBus) -> dict[str, Any]:
    """``bootstrap_servers`` and ``bus.client`` as aiokafka keyword arguments: ``${VAR}`` read
    from the environment (secrets stay out of the job file), ``ssl_*`` files made into an SSL
    context. Errors name the option."""
    options: dict[str, Any] = {}
    for key, value in bus.client.items():
        if isinstance(value, str):

            def env(match: re.Match[str], key: str = key) -> str:
                name = match.group(1)
                if name not in os.environ:
                    raise SpecError(f"bus.client.{key}: environment variable {name} is not set")
                return os.environ[name]

            value = _VAR.sub(env, value)
        options[key] = value
    tls = {k: options.pop(k) for k in _SSL_FILES if k in options}
    if tls:
        from aiokafka.helpers import create_ssl_context

        try:
            options["ssl_context"] = create_ssl_context(
                cafile=tls.get("ssl_cafile"),
                certfile=tls.get("ssl_certfile"),
                keyfile=tls.get("ssl_keyfile"),
                password=tls.get("ssl_password"),
            )
            options["ssl_context"].check_hostname = bool(tls.get("ssl_check_hostname", True))
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise SpecError(f"bus.client: cannot build the TLS context: {exc}") from exc
        options.setdefault("security_protocol", "SSL")
    return {"bootstrap_servers": bus.bootstrap_servers, **options}


class Loop:
    """An event loop on a daemon thread; ``call`` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Cancel what is still pending on the loop (aiokafka's connection readers), then stop."""

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):  # closing: a task that will not stop is left
            self.call(cancel_rest(), timeout=5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


async def ensure_topics(bus: KafkaBus, options: dict[str, Any]) -> None:
    """Create the input, output and dead-letter topics that do not exist yet (all with
    ``bus.partitions``); a topic that exists is left as it is."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
    except Exception as exc:  # aiokafka raises several unrelated types for "no broker"
        await admin.close()
        raise TritonPipeError(
            f"kafka at {bus.bootstrap_servers}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in (bus.topic, bus.output, bus.dead_letter) if t not in existing]
        if wanted:
            reply = await admin.create_topics(
                [NewTopic(t, bus.partitions, bus.replication_factor) for t in wanted]
            )
            for name, code, message in reply.topic_errors:
                if code not in (0, 36):  # 36: created meanwhile by another worker
                    raise TritonPipeError(f"kafka topic '{name}': error {code}: {message}")
    finally:
        await admin.close()


@dataclass
class Held:
    """An event handed to the worker and not acknowledged yet."""

    message: Message
    handed_at: float


@dataclass
class Partition:
    """What this worker holds of one assigned partition."""

    held: dict[int, Held] = field(default_factory=dict)  # by offset
    fetched: int | None = None  # the offset after the last one fetched
    committed: int | None = None  # the last offset this worker committed

    def commit_point(self) -> int | None:
        """The offset it is safe to commit: the lowest held, else the next to fetch."""
        if self.held:
            return min(self.held)
        return self.fetched

    def take(self, offset: int, message: Message, now: float) -> Message:
        self.held[offset] = Held(message=message, handed_at=now)
        self.fetched = offset + 1
        return message

    def due(self, retry_after_s: float, now: float) -> list[Held]:
        """Held past ``retry_after_s`` (their batch failed): to deliver again."""
        return [h for h in self.held.values() if now - h.handed_at >= retry_after_s]


def message_id(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


def parse_id(message_id: str) -> tuple[int, int]:
    partition, offset = message_id.split(":")
    return int(partition), int(offset)


class Offsets:
    """Per assigned partition: events held and the commit point (all on the loop's thread)."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self.partitions: dict[int, Partition] = {}

    def assign(self, partitions: list[int]) -> None:
        for p in partitions:
            self.partitions.setdefault(p, Partition())

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self.partitions.pop(p, None)

    def take(self, partition: int, offset: int, body: bytes) -> Message | None:
        """A fetched record as a message; None for a partition no longer assigned."""
        state = self.partitions.get(partition)
        if state is None:
            return None
        message = Message(id=message_id(partition, offset), body=body, deliveries=1)
        return state.take(offset, message, time.monotonic())

    def redeliveries(self, limit: int) -> list[Message]:
        now, out = time.monotonic(), list[Message]()
        for state in self.partitions.values():
            for held in state.due(self.retry_after_s, now):
                if len(out) >= limit:
                    return out
                old = held.message
                held.message = Message(id=old.id, body=old.body, deliveries=old.deliveries + 1)
                held.handed_at = now
                out.append(held.message)
        return out

    def ack(self, ids: list[str]) -> None:
        for mid in ids:
            partition, offset = parse_id(mid)
            state = self.partitions.get(partition)
            if state is not None:  # else revoked: its new owner has it from the last commit
                state.held.pop(offset, None)

    def held(self, partitions: list[int]) -> int:
        return sum(len(self.partitions[p].held) for p in partitions if p in self.partitions)

    def to_commit(self, partitions: list[int] | None = None) -> dict[int, int]:
        """Partition -> offset, where the commit point moved past the last commit."""
        out = {}
        for p, state in self.partitions.items():
            if partitions is not None and p not in partitions:
                continue
            point = state.commit_point()
            if point is not None and point != state.committed:
                out[p] = point
        return out

    def committed(self, points: dict[int, int]) -> None:
        for p, offset in points.items():
            if p in self.partitions:
                self.partitions[p].committed = offset
