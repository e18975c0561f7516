"""Redis Streams: a consumer group for input, an output stream deduplicated by event id.

``read`` first claims entries another consumer left pending longer than ``claim_idle_ms``
(``XAUTOCLAIM``: a worker that was killed), then reads new ones (``XREADGROUP >``). Outputs go
through a small Lua script that records the event id in a hash and adds the stream entry only
when the id is new, atomically, so a redelivered event never yields a second record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tritonpipe.errors import TritonPipeError
from tritonpipe.stream.bus import Message, Output, Publisher, Sink, Source
from tritonpipe.stream.config import RedisBus

# KEYS: output stream, id hash. ARGV: event id, body. Adds the entry only for a new id.
_WRITE_ONCE = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'body', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], entry)
return 1
"""


def client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def ids_key(output: str) -> str:
    """The hash of event ids already written to ``output``."""
    return f"{output}:ids"


class RedisSource(Source):
    def __init__(self, bus: RedisBus, consumer: str, payload_field: str) -> None:
        import redis

        self.bus, self.consumer, self.field = bus, consumer, payload_field.encode()
        self._redis = client(bus.url)
        self._cursor = "0-0"
        try:
            self._redis.xgroup_create(bus.stream, bus.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise TritonPipeError(f"redis stream '{bus.stream}': {exc}") from exc
        except redis.ConnectionError as exc:
            raise TritonPipeError(f"redis at {bus.url}: {exc}") from exc

    def _message(self, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int) -> Message:
        body = fields.get(self.field)
        refused = None
        if body is None:
            names = ", ".join(repr(k.decode(errors="replace")) for k in fields) or "none"
            refused = (
                f"no payload: the entry has no field '{self.field.decode()}' (the job's "
                f"payload_field); it has {names}"
            )
        return Message(
            id=entry_id.decode(), body=body or b"", deliveries=deliveries, refused=refused
        )

    def _claim(self, count: int) -> list[Message]:
        reply = self._redis.xautoclaim(
            self.bus.stream,
            self.bus.group,
            self.consumer,
            min_idle_time=self.bus.claim_idle_ms,
            start_id=self._cursor,
            count=count,
        )
        cursor, entries = reply[0], reply[1]
        self._cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        out = []
        for entry_id, fields in entries:
            if fields is None:  # trimmed away while pending: nothing left to score
                self._redis.xack(self.bus.stream, self.bus.group, entry_id)
                continue
            pending = self._redis.xpending_range(
                self.bus.stream, self.bus.group, entry_id, entry_id, 1
            )
            times = int(pending[0]["times_delivered"]) if pending else 2
            out.append(self._message(entry_id, fields, times))
        return out

    def read(self, max_events: int, wait_ms: int) -> list[Message]:
        messages = self._claim(max_events)
        if len(messages) < max_events:
            reply = self._redis.xreadgroup(
                self.bus.group,
                self.consumer,
                {self.bus.stream: ">"},
                count=max_events - len(messages),
                block=None if messages else max(wait_ms, 1),
            )
            for _, entries in reply or []:
                messages.extend(self._message(i, f, 1) for i, f in entries)
        return messages

    def ack(self, messages: Sequence[Message]) -> None:
        if messages:
            self._redis.xack(self.bus.stream, self.bus.group, *[m.id for m in messages])

    def lag(self) -> int | None:
        for group in self._redis.xinfo_groups(self.bus.stream):
            if group["name"].decode() == self.bus.group:
                lag = group.get("lag")
                return int(lag) if lag is not None else None
        return None

    def close(self) -> None:
        self._redis.close()


class RedisSink(Sink):
    def __init__(self, bus: RedisBus) -> None:
        self.bus = bus
        self._redis = client(bus.url)
        self._write_once = self._redis.register_script(_WRITE_ONCE)

    def write(self, outputs: Sequence[Output]) -> list[bool]:
        pipe = self._redis.pipeline(transaction=False)
        for out in outputs:
            self._write_once(
                keys=[self.bus.output, ids_key(self.bus.output)],
                args=[out.key, out.body],
                client=pipe,
            )
        return [bool(r) for r in pipe.execute()]

    def dead_letter(self, message: Message, reason: str) -> None:
        self._redis.xadd(
            self.bus.dead_letter,
            {
                "source_id": message.id,
                "body": message.body,
                "reason": reason,
                "deliveries": message.deliveries,
            },
        )

    def close(self) -> None:
        self._redis.close()


class RedisPublisher(Publisher):
    def __init__(self, bus: RedisBus, payload_field: str) -> None:
        self.bus, self.field = bus, payload_field
        self._redis = client(bus.url)

    def publish(self, bodies: Sequence[bytes]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for body in bodies:
            pipe.xadd(self.bus.stream, {self.field: body})
        pipe.execute()

    def close(self) -> None:
        self._redis.close()


def status(bus: RedisBus) -> dict[str, Any]:
    """The group's lag and pending counts (per consumer) and the dead-letter count."""
    r = client(bus.url)
    try:
        groups = {g["name"].decode(): g for g in r.xinfo_groups(bus.stream)}
        group = groups.get(bus.group)
        consumers = (
            {
                c["name"].decode(): int(c["pending"])
                for c in r.xinfo_consumers(bus.stream, bus.group)
            }
            if group
            else {}
        )
        return {
            "stream": bus.stream,
            "group": bus.group,
            "length": int(r.xlen(bus.stream)),
            "lag": None if group is None or group.get("lag") is None else int(group["lag"]),
            "pending": int(group["pending"]) if group else 0,
            "consumers": consumers,
            "outputs": int(r.xlen(bus.output)),
            "dead_letters": int(r.xlen(bus.dead_letter)),
        }
    finally:
        r.close()
