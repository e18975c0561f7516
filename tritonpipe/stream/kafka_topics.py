"""Reading Kafka topics outside a consumer group: partitions, end offsets, the group's lag per
partition, every record of a topic (the deduplicating output reader) and ``stream status``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from tritonpipe.errors import TritonPipeError
from tritonpipe.stream.config import KafkaBus
from tritonpipe.stream.kafka_client import Loop, client_options


async def partitions(consumer: Any, topic: str) -> set[int]:
    """The topic's partition ids, from the brokers' metadata of every topic (a consumer's own
    metadata covers only the topics it reads)."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        cluster = await consumer._client.fetch_all_metadata()  # aiokafka: no public call for it
        parts = cluster.partitions_for_topic(topic)
    if not parts:
        raise TritonPipeError(f"kafka topic '{topic}' does not exist")
    return set(parts)


def reader(options: dict[str, Any]) -> Any:
    """A consumer outside any group, for reading partitions it is assigned."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100, **options
    )


async def end_offsets(reader: Any, parts: list[Any]) -> dict[Any, int]:
    """Each partition's end offset: the listed one, or the high watermark a fetch of its last
    records reports when that is higher (Tansu 0.6 lists the last batch's first offset + 1)."""
    ends = await reader.end_offsets(parts)
    reader.assign(parts)
    for tp in parts:
        reader.seek(tp, max(ends[tp] - 1, 0))
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(reader.highwater(tp) is None for tp in parts):
        await reader.getmany(*parts, timeout_ms=200, max_records=1)
    return {tp: max(ends[tp], reader.highwater(tp) or 0) for tp in parts}


async def partition_lags(group: Any, meter: Any, topic: str) -> dict[int, int]:
    """End offset minus the group's committed offset, per partition (``group``: a consumer of
    the group; ``meter``: a reader); a partition never committed counts from its first offset."""
    from aiokafka import TopicPartition

    parts = [TopicPartition(topic, p) for p in sorted(await partitions(meter, topic))]
    ends = await end_offsets(meter, parts)
    starts = await meter.beginning_offsets(parts)
    committed = await asyncio.gather(*(group.committed(tp) for tp in parts))
    return {
        tp.partition: max(ends[tp] - (starts[tp] if c is None else c), 0)
        for tp, c in zip(parts, committed, strict=True)
    }


def _records(bus: KafkaBus, topic: str, loop: Loop) -> list[Any]:
    """Every record of ``topic`` from its first offset to its end now."""
    from aiokafka import TopicPartition

    async def read() -> list[Any]:
        consumer = reader(client_options(bus))
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in sorted(await partitions(consumer, topic))]
            ends = await end_offsets(consumer, parts)
            await consumer.seek_to_beginning(*parts)
            out: list[Any] = []
            listed = await consumer.end_offsets(parts)
            todo, idle = {tp for tp in parts if ends[tp] > 0}, 0
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=1000)
                idle = 0 if any(batch.values()) else idle + 1
                for records in batch.values():
                    out.extend(records)
                # Done at the end; or past the listed end with 3 empty fetches in a row (an
                # offset the broker counted but never wrote, seen after a Tansu restart).
                todo = {
                    tp
                    for tp in todo
                    if (position := await consumer.position(tp)) < ends[tp]
                    and not (idle >= 3 and position >= listed[tp])
                }
            return out
        finally:
            await consumer.stop()

    return loop.call(read(), timeout=300)


def read_outputs(bus: KafkaBus, *, unique: bool = True) -> Iterator[tuple[str, bytes]]:
    """(event id, output) for every event in the output topic; with ``unique`` the first record
    of each id only (a consumer-side helper: the topic may hold a rare second record of an id)."""
    loop = Loop()
    try:
        records = _records(bus, bus.output, loop)
    finally:
        loop.close()
    seen: set[str] = set()
    for record in records:
        key = record.key.decode(errors="replace") if record.key is not None else ""
        if not unique or key not in seen:
            seen.add(key)
            yield key, record.value


def read_dead_letters(bus: KafkaBus) -> list[tuple[dict[str, str], bytes]]:
    """(headers, event) of every dead letter."""
    loop = Loop()
    try:
        records = _records(bus, bus.dead_letter, loop)
    finally:
        loop.close()
    return [({k: v.decode(errors="replace") for k, v in r.headers}, r.value) for r in records]


def status(bus: KafkaBus) -> dict[str, Any]:
    """The group's lag per partition (end offset minus committed) and the records in the
    output and dead-letter topics. Kafka keeps no per-event delivery state, so ``pending`` (held
    by a worker, not committed) is part of the lag and is not reported apart."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def gather() -> dict[str, Any]:
        options = client_options(bus)
        group = AIOKafkaConsumer(group_id=bus.group, enable_auto_commit=False, **options)
        meter = reader(options)
        try:
            await group.start()
            await meter.start()
        except Exception as exc:
            await group.stop()
            await meter.stop()
            raise TritonPipeError(
                f"kafka at {bus.bootstrap_servers}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            try:
                lags = await partition_lags(group, meter, bus.topic)
            except TritonPipeError:  # no topic yet: nothing produced, nothing behind
                lags = {}
            counts = {}
            for topic in (bus.topic, bus.output, bus.dead_letter):
                try:
                    parts = [TopicPartition(topic, p) for p in await partitions(meter, topic)]
                except TritonPipeError:  # not created yet
                    counts[topic] = 0
                    continue
                ends = await end_offsets(meter, parts)
                starts = await meter.beginning_offsets(parts)
                counts[topic] = sum(ends[tp] - starts[tp] for tp in parts)
            return {
                "stream": bus.topic,
                "group": bus.group,
                "length": counts[bus.topic],
                "lag": sum(lags.values()),
                "pending": None,
                "consumers": {},
                "partitions": {str(p): lag for p, lag in sorted(lags.items())},
                "outputs": counts[bus.output],
                "dead_letters": counts[bus.dead_letter],
            }
        finally:
            await group.stop()
            await meter.stop()

    loop = Loop()
    try:
        return loop.call(gather())
    finally:
        loop.close()
