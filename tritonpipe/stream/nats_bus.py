"""NATS JetStream: a durable pull consumer for input, an output stream deduplicated by event id.

A message not acknowledged within ``ack_wait_s`` (its worker died) is delivered again to any
member of the durable consumer. Outputs are published with ``Nats-Msg-Id`` set to the event id,
so JetStream drops a second publish of the same id within the stream's duplicate window.
nats-py is asyncio; the worker is not, so each adapter runs its own event loop on a thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from tritonpipe.errors import TritonPipeError
from tritonpipe.stream.bus import Message, Output, Publisher, Sink, Source
from tritonpipe.stream.config import NatsBus

T = TypeVar("T")
log = logging.getLogger("tritonpipe.stream")


def output_stream(bus: NatsBus) -> str:
    return f"{bus.stream}_OUT"


def dead_stream(bus: NatsBus) -> str:
    return f"{bus.stream}_DEAD"


class _Loop:
    """A connection and its event loop on a daemon thread; ``call`` runs a coroutine there."""

    CONNECT_S = 10.0

    def __init__(self, url: str) -> None:
        import nats

        self._warned = 0.0
        self._closing = False
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        # Once connected, reconnect for as long as it takes (a restarted server): the worker
        # decides when a failing bus is fatal. The first connection gets CONNECT_S.
        connect = nats.connect(
            url,
            connect_timeout=2,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=self._error,  # nats-py's own prints a traceback per failed attempt
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
        )
        try:
            self.nc = self.call(asyncio.wait_for(connect, self.CONNECT_S))
        except TimeoutError:
            self.close()
            raise TritonPipeError(
                f"nats at {url}: no server answered within {self.CONNECT_S:.0f}s"
            ) from None
        except Exception as exc:  # nats-py raises several unrelated types for one meaning
            self.close()
            raise TritonPipeError(f"nats at {url}: {type(exc).__name__}: {exc}") from exc
        self.js = self.nc.jetstream()

    async def _error(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= 5.0:  # one line every few seconds while it lasts
            self._warned = now
            log.warning("nats: %s: %s", type(exc).__name__, exc)

    async def _disconnected(self) -> None:
        if not self._closing:
            log.warning("nats: disconnected; reconnecting")

    async def _reconnected(self) -> None:
        self._warned = 0.0
        log.warning("nats: reconnected")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def ensure_stream(self, name: str, subjects: list[str], **config: Any) -> None:
        from nats.js.errors import NotFoundError

        try:
            await self.js.stream_info(name)
        except NotFoundError:
            await self.js.add_stream(name=name, subjects=subjects, **config)

    def close(self) -> None:
        self._closing = True
        if hasattr(self, "nc"):
            # close, not drain: drain waits on the pull subscription's inbox; every ack and
            # publish was already confirmed by the server, so nothing is in flight.
            self.call(self.nc.close(), timeout=5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class NatsSource(Source):
    def __init__(self, bus: NatsBus) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig

        self.bus = bus
        self._conn = _Loop(bus.url)
        self._conn.call(self._conn.ensure_stream(bus.stream, [bus.subject]))
        config = ConsumerConfig(
            durable_name=bus.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=bus.ack_wait_s,
            max_deliver=-1,  # the worker dead-letters after max_attempts itself
        )
        self._sub = self._conn.call(
            self._conn.js.pull_subscribe(
                bus.subject, durable=bus.durable, stream=bus.stream, config=config
            )
        )
        self._inflight: dict[str, Any] = {}

    def read(self, max_events: int, wait_ms: int) -> list[Message]:
        async def fetch() -> list[Any]:
            try:
                return list(await self._sub.fetch(max_events, timeout=max(wait_ms, 1) / 1000))
            except TimeoutError:
                # No messages within the wait. nats-py says so with its own TimeoutError, or a
                # plain asyncio one when the wait ran out between its two pull requests.
                return []

        out = []
        for msg in self._conn.call(fetch()):
            meta = msg.metadata
            key = str(meta.sequence.stream)
            self._inflight[key] = msg
            out.append(Message(id=key, body=msg.data, deliveries=int(meta.num_delivered)))
        return out

    def ack(self, messages: Sequence[Message]) -> None:
        async def ack_all(msgs: list[Any]) -> None:
            # Confirmed by the server (done means done), all at once; nats-py's 1 s default
            # timeout is too short for a busy machine.
            await asyncio.gather(*(m.ack_sync(timeout=10.0) for m in msgs))

        self._conn.call(ack_all([self._inflight.pop(m.id) for m in messages]))

    def lag(self) -> int | None:
        info = self._conn.call(self._conn.js.consumer_info(self.bus.stream, self.bus.durable))
        return int(info.num_pending)

    def close(self) -> None:
        self._conn.close()


class NatsSink(Sink):
    def __init__(self, bus: NatsBus) -> None:
        self.bus = bus
        self._conn = _Loop(bus.url)
        self._conn.call(
            self._conn.ensure_stream(
                output_stream(bus), [bus.output], duplicate_window=bus.dedupe_window_s
            )
        )
        self._conn.call(self._conn.ensure_stream(dead_stream(bus), [bus.dead_letter]))

    def write(self, outputs: Sequence[Output]) -> list[bool]:
        async def publish() -> list[bool]:
            js = self._conn.js
            acks = await asyncio.gather(
                *[
                    js.publish(self.bus.output, o.body, headers={"Nats-Msg-Id": o.key})
                    for o in outputs
                ]
            )
            return [not bool(a.duplicate) for a in acks]

        return self._conn.call(publish()) if outputs else []

    def dead_letter(self, message: Message, reason: str) -> None:
        headers = {
            "Tritonpipe-Reason": reason.replace("\n", " ")[:4000],
            "Tritonpipe-Source-Seq": message.id,
            "Tritonpipe-Deliveries": str(message.deliveries),
        }
        self._conn.call(self._conn.js.publish(self.bus.dead_letter, message.body, headers=headers))

    def close(self) -> None:
        self._conn.close()


class NatsPublisher(Publisher):
    def __init__(self, bus: NatsBus) -> None:
        self.bus = bus
        self._conn = _Loop(bus.url)
        self._conn.call(self._conn.ensure_stream(bus.stream, [bus.subject]))

    def publish(self, bodies: Sequence[bytes]) -> None:
        async def publish_all() -> None:
            await asyncio.gather(*[self._conn.js.publish(self.bus.subject, b) for b in bodies])

        self._conn.call(publish_all())

    def close(self) -> None:
        self._conn.close()


def status(bus: NatsBus) -> dict[str, Any]:
    """The durable consumer's lag and pending (unacknowledged) counts, and dead letters."""
    conn = _Loop(bus.url)
    try:

        async def gather() -> dict[str, Any]:
            from nats.js.errors import NotFoundError

            length = int((await conn.js.stream_info(bus.stream)).state.messages)
            try:
                info = await conn.js.consumer_info(bus.stream, bus.durable)
                lag, pending = int(info.num_pending), int(info.num_ack_pending)
            except NotFoundError:  # no worker has joined yet: everything is lag
                lag, pending = length, 0
            counts = {}
            for name in (output_stream(bus), dead_stream(bus)):
                try:
                    counts[name] = int((await conn.js.stream_info(name)).state.messages)
                except NotFoundError:
                    counts[name] = 0
            return {
                "stream": bus.stream,
                "group": bus.durable,
                "length": length,
                "lag": lag,
                "pending": pending,
                "consumers": {},
                "outputs": counts[output_stream(bus)],
                "dead_letters": counts[dead_stream(bus)],
            }

        return conn.call(gather())
    finally:
        conn.close()
