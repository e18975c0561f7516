"""Watch a stream job's outputs as they are written, on any bus: the prediction records (for
end-to-end latency), the group's lag and the dead letters. The stream driver uses it."""

from __future__ import annotations

import json
from typing import Any

from tritonpipe.stream.config import JobConfig, KafkaBus, NatsBus, RedisBus


class Watch:
    def poll(self) -> list[dict[str, Any]]:
        """New output records (waits up to about half a second for some)."""
        raise NotImplementedError

    def lag(self) -> int:
        raise NotImplementedError

    def dead(self) -> int:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class RedisWatch(Watch):
    def __init__(self, bus: RedisBus) -> None:
        import redis

        self.bus, self.r, self.last = bus, redis.Redis.from_url(bus.url), "0-0"

    def poll(self) -> list[dict[str, Any]]:
        out = []
        for _, entries in self.r.xread({self.bus.output: self.last}, count=5000, block=500) or []:
            for entry_id, fields in entries:
                self.last = entry_id.decode()
                out.append(json.loads(fields[b"body"]))
        return out

    def lag(self) -> int:
        groups = {g["name"].decode(): g for g in self.r.xinfo_groups(self.bus.stream)}
        return int(groups.get(self.bus.group, {}).get("lag") or 0)

    def dead(self) -> int:
        return int(self.r.xlen(self.bus.dead_letter))

    def close(self) -> None:
        self.r.close()


class KafkaWatch(Watch):
    def __init__(self, bus: KafkaBus) -> None:
        from aiokafka import TopicPartition

        from tritonpipe.stream.kafka_client import Loop, client_options
        from tritonpipe.stream.kafka_topics import partitions, reader

        self.bus, self.loop = bus, Loop()

        async def start() -> Any:
            consumer = reader(client_options(bus))
            await consumer.start()
            parts = await partitions(consumer, bus.output)
            consumer.assign([TopicPartition(bus.output, p) for p in parts])
            return consumer

        self.consumer = self.loop.call(start())

    def poll(self) -> list[dict[str, Any]]:
        batch = self.loop.call(self.consumer.getmany(timeout_ms=500, max_records=5000))
        return [json.loads(r.value) for records in batch.values() for r in records]

    def lag(self) -> int:
        from tritonpipe.stream.kafka_topics import status

        self._status = status(self.bus)
        return int(self._status["lag"])

    def dead(self) -> int:
        from tritonpipe.stream.kafka_topics import status

        info = getattr(self, "_status", None) or status(self.bus)
        return int(info["dead_letters"])

    def close(self) -> None:
        try:
            self.loop.call(self.consumer.stop())
        finally:
            self.loop.close()


class NatsWatch(Watch):
    def __init__(self, bus: NatsBus) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig

        from tritonpipe.stream.nats_bus import _Loop, output_stream

        self.bus, self.conn = bus, _Loop(bus.url)
        config = ConsumerConfig(ack_policy=AckPolicy.NONE)  # read once, never redelivered
        self.sub = self.conn.call(
            self.conn.js.pull_subscribe(bus.output, stream=output_stream(bus), config=config)
        )

    def poll(self) -> list[dict[str, Any]]:
        import nats.errors

        async def fetch() -> list[Any]:
            try:
                return list(await self.sub.fetch(1000, timeout=0.5))
            except nats.errors.TimeoutError:
                return []

        msgs = self.conn.call(fetch(), timeout=120.0)  # a loaded machine: slow, not stuck
        return [json.loads(m.data) for m in msgs]

    def lag(self) -> int:
        from tritonpipe.stream.nats_bus import status

        self._status = status(self.bus)
        return int(self._status["lag"])

    def dead(self) -> int:
        from tritonpipe.stream.nats_bus import status

        info = getattr(self, "_status", None) or status(self.bus)
        return int(info["dead_letters"])

    def close(self) -> None:
        self.conn.close()


def watch(config: JobConfig) -> Watch:
    bus = config.bus
    if isinstance(bus, KafkaBus):
        return KafkaWatch(bus)
    if isinstance(bus, NatsBus):
        return NatsWatch(bus)
    return RedisWatch(bus)


__all__ = ["Watch", "watch"]
