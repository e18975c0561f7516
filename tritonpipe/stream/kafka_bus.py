"""Kafka: a consumer group for input (partitions are the unit of scale), outputs keyed by event id.

At least once: a partition's offset is committed only up to its lowest event not yet written
(see kafka_client.Offsets), after the producer's writes were acknowledged (``acks=all``). A
worker that dies (or is stopped) leaves its partitions to the group: they move to the others
after ``session_timeout_ms`` and resume from the last commit. An event handed out and not
acknowledged (its batch failed) is delivered again after ``retry_after_ms``.

One record per event id, without transactions or an idempotent producer (not every broker has
them): outputs carry the event id as their key; the sink remembers the ids it wrote, and each
time partitions are assigned to it (a worker died or joined) or a write failed half-way, it first
reads the output topic's records written since it last looked (the first time, the last
``dedupe_window_s``), so an event that a dead worker wrote but did not commit is not written
again. What this cannot prevent (a producer retrying a write whose acknowledgement was lost, a
worker writing after it lost its partitions) ``kafka_topics.read_outputs`` drops: it keeps the first
record per key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from tritonpipe.errors import TritonPipeError
from tritonpipe.stream.bus import Message, Output, Publisher, Sink, Source
from tritonpipe.stream.config import KafkaBus
from tritonpipe.stream.kafka_client import Loop, Offsets, client_options, ensure_topics
from tritonpipe.stream.kafka_topics import end_offsets, partition_lags, partitions, reader

log = logging.getLogger("tritonpipe.stream")


class _Quiet(logging.Filter):
    """aiokafka logs every failed attempt while a broker is away (dozens a second): let one
    warning through every few seconds, prefixed so that it reads as the bus's."""

    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        if now - self._last < 5.0:
            return False
        self._last = now
        record.msg = f"kafka client (one line in 5 s): {record.msg}"
        return True


def _quiet_aiokafka() -> None:
    for name in ("aiokafka", "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender",
                 "aiokafka.consumer.fetcher"):  # fmt: skip
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Quiet) for f in logger.filters):
            logger.addFilter(_Quiet())


class KafkaConnection:
    """The consumer (group member), the producer and an output-topic reader of one worker, on
    one event loop; the source and the sink are two views of it."""

    def __init__(self, bus: KafkaBus) -> None:
        self.bus = bus
        self.options = client_options(bus)
        self.offsets = Offsets(bus.retry_after_ms / 1000)
        self.written: dict[str, float] = {}  # event id -> when seen (ordered: oldest first)
        self._scan_from: dict[int, int] | None = None  # output partition -> next offset to read
        self._rescan = False
        self._lags: tuple[float, dict[int, int]] = (0.0, {})
        self._users = 0
        self._ready: asyncio.Event | None = None  # cleared while partitions are being assigned
        _quiet_aiokafka()
        self.loop = Loop()
        try:
            self.loop.call(self._start())
        except Exception:
            self.loop.close()
            raise

    async def _start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.abc import ConsumerRebalanceListener

        bus = self.bus
        self._ready = asyncio.Event()
        self._ready.set()
        if bus.create_topics:
            await ensure_topics(bus, self.options)
        connection = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await connection._revoked([tp.partition for tp in revoked])

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await connection._assigned([tp.partition for tp in assigned])

        self.consumer = AIOKafkaConsumer(
            group_id=bus.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=bus.session_timeout_ms,
            heartbeat_interval_ms=max(bus.session_timeout_ms // 3, 100),
            **self.options,
        )
        self.producer = AIOKafkaProducer(acks="all", linger_ms=2, **self.options)
        self.reader = reader(self.options)  # of the output topic's event ids
        self.meter = reader(self.options)  # of the input topic's end offsets (the lag)
        try:
            for part in (self.producer, self.reader, self.meter, self.consumer):
                await part.start()
        except Exception as exc:
            await self._stop()
            raise TritonPipeError(
                f"kafka at {bus.bootstrap_servers}: {type(exc).__name__}: {exc}"
            ) from exc
        self.consumer.subscribe([bus.topic], listener=Listener())

    # The group's callbacks (on the loop, between fetches).

    async def _revoked(self, partitions: list[int]) -> None:
        """Let the batch in hand finish (bounded), commit what is done, forget the rest: the
        partitions' next owner starts from that commit."""
        deadline = time.monotonic() + min(10.0, self.bus.session_timeout_ms / 2000)
        while self.offsets.held(partitions) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        try:
            await self._commit(partitions)
        except Exception as exc:  # the group moved on; the next owner redoes those events
            log.warning("kafka: commit at revoke failed: %s: %s", type(exc).__name__, exc)
        self.offsets.revoke(partitions)

    async def _assigned(self, partitions: list[int]) -> None:
        assert self._ready is not None
        self._ready.clear()  # read() hands nothing out until the scan is done
        self.offsets.assign(partitions)
        try:
            await self._scan()  # what a dead or previous owner wrote but did not commit
        except Exception as exc:  # the broker went away: scan before the next write instead
            log.warning(
                "kafka: reading '%s' failed: %s: %s", self.bus.output, type(exc).__name__, exc
            )
            self._rescan = True
        finally:
            self._ready.set()
        log.info("kafka: partitions %s of '%s' assigned", sorted(partitions), self.bus.topic)

    # Offsets and commits.

    async def _commit(self, partitions: list[int] | None = None) -> None:
        from aiokafka import TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        points = self.offsets.to_commit(partitions)
        if points:
            topic = self.bus.topic
            await self.consumer.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in points.items()}
            )
            self.offsets.committed(points)

    async def read(self, max_events: int, wait_ms: int) -> list[Message]:
        out = self.offsets.redeliveries(max_events)
        if self.offsets.to_commit():  # a commit that was deferred (a rebalance)
            await self._commit_between_rebalances()
        if len(out) < max_events:
            batch = await self.consumer.getmany(
                timeout_ms=0 if out else max(wait_ms, 1), max_records=max_events - len(out)
            )
            owned = {tp.partition for tp in self.consumer.assignment()}
            for tp, records in batch.items():
                if tp.partition in owned:  # fetched before its assignment callback ran
                    self.offsets.assign([tp.partition])
                for record in records:
                    message = self.offsets.take(tp.partition, record.offset, record.value or b"")
                    if message is not None:  # None: revoked meanwhile, its new owner has it
                        out.append(message)
        assert self._ready is not None
        await self._ready.wait()
        return out

    async def ack(self, ids: list[str]) -> None:
        self.offsets.ack(ids)
        await self._commit_between_rebalances()

    async def _commit_between_rebalances(self) -> None:
        """Commit; while the group rebalances, leave it for the revoke callback or the next
        read (the commit points only move forward, so a later commit covers this one)."""
        from aiokafka.errors import CommitFailedError, RebalanceInProgressError

        try:
            await self._commit()
        except (CommitFailedError, RebalanceInProgressError) as exc:
            log.info("kafka: commit deferred (%s): the group is rebalancing", type(exc).__name__)

    async def lags(self) -> dict[int, int]:
        """Per partition of the input topic: end offset minus the group's committed offset
        (the whole group's, so every worker reports the same); refreshed at most every 0.5 s."""
        if time.monotonic() - self._lags[0] < 0.5:
            return self._lags[1]
        lags = await partition_lags(self.consumer, self.meter, self.bus.topic)
        self._lags = (time.monotonic(), lags)
        return lags

    # The output topic's event ids.

    async def _scan(self) -> None:
        """Read the output topic from where the last scan ended up to its current end,
        remembering every key (event id) found."""
        from aiokafka import TopicPartition

        reader, topic = self.reader, self.bus.output
        parts = [TopicPartition(topic, p) for p in sorted(await partitions(reader, topic))]
        reader.assign(parts)
        if self._scan_from is None:
            since = int((time.time() - self.bus.dedupe_window_s) * 1000)
            found = await reader.offsets_for_times(dict.fromkeys(parts, since))
            ends = await end_offsets(reader, parts)
            self._scan_from = {
                tp.partition: ends[tp] if found.get(tp) is None else found[tp].offset
                for tp in parts
            }
        for tp in parts:
            reader.seek(tp, self._scan_from.get(tp.partition, 0))
        listed = await reader.end_offsets(parts)
        seen, todo, idle = 0, set(parts), 0
        deadline = time.monotonic() + 120
        while todo:
            batch = await reader.getmany(*todo, timeout_ms=500, max_records=10_000)
            idle = 0 if any(batch.values()) else idle + 1
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    if record.key is not None:
                        self.written[record.key.decode(errors="replace")] = now
                        seen += 1
            for tp in list(todo):
                position, end = await reader.position(tp), reader.highwater(tp)
                self._scan_from[tp.partition] = position
                # At the end; or past the listed end with 3 empty fetches in a row (an offset
                # the broker counted but never wrote, seen after a Tansu restart).
                if (end is not None and position >= end) or (idle >= 3 and position >= listed[tp]):
                    todo.discard(tp)
            if todo and time.monotonic() > deadline:
                raise TritonPipeError(f"kafka topic '{topic}': could not read it to its end")
        self._forget()
        self._rescan = False
        if seen:
            log.info("kafka: read %d event ids from '%s'", seen, topic)

    def _forget(self) -> None:
        """Drop ids older than the window (the dict is in the order they were added)."""
        cutoff = time.monotonic() - self.bus.dedupe_window_s
        while self.written:
            key = next(iter(self.written))
            if self.written[key] >= cutoff:
                break
            del self.written[key]

    async def write(self, outputs: Sequence[Output]) -> list[bool]:
        if self._rescan:  # the last write failed part-way: some of it may be in the topic
            await self._scan()
        new, sends, batch = [], [], set()
        for out in outputs:
            fresh = out.key not in self.written and out.key not in batch
            new.append(fresh)
            if fresh:
                batch.add(out.key)
                sends.append(
                    await self.producer.send(self.bus.output, out.body, key=out.key.encode())
                )
        try:
            await asyncio.gather(*sends)
        except Exception:
            self._rescan = True
            raise
        now = time.monotonic()
        for key in batch:
            self.written[key] = now
        return new

    async def dead_letter(self, message: Message, reason: str) -> None:
        headers = [
            ("tritonpipe-reason", reason.replace("\n", " ")[:4000].encode()),
            ("tritonpipe-source", f"{self.bus.topic}:{message.id}".encode()),
            ("tritonpipe-deliveries", str(message.deliveries).encode()),
        ]
        await self.producer.send_and_wait(self.bus.dead_letter, message.body, headers=headers)

    # Lifetime: the source and the sink each hold it; the last to close stops it.

    def hold(self) -> KafkaConnection:
        self._users += 1
        return self

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            try:
                self.loop.call(self._close(), timeout=30)
            finally:
                self.loop.close()

    async def _close(self) -> None:
        try:
            await self._commit()  # everything acknowledged so far, before leaving the group
        except Exception as exc:  # a broker that is gone: the next owner redoes the rest
            log.warning("kafka: final commit failed: %s: %s", type(exc).__name__, exc)
        await self._stop()

    async def _stop(self) -> None:
        for part in ("consumer", "reader", "meter", "producer"):
            if hasattr(self, part):
                try:
                    await getattr(self, part).stop()
                except Exception as exc:  # closing: nothing left to save
                    log.debug("kafka: closing %s: %s", part, exc)


class KafkaSource(Source):
    def __init__(self, connection: KafkaConnection) -> None:
        self._conn = connection.hold()

    def read(self, max_events: int, wait_ms: int) -> list[Message]:
        return self._conn.loop.call(self._conn.read(max_events, wait_ms))

    def ack(self, messages: Sequence[Message]) -> None:
        if messages:
            self._conn.loop.call(self._conn.ack([m.id for m in messages]))

    def lag(self) -> int | None:
        return sum(self.partition_lag().values())

    def partition_lag(self) -> dict[str, int]:
        return {str(p): n for p, n in self._conn.loop.call(self._conn.lags()).items()}

    def close(self) -> None:
        self._conn.release()


class KafkaSink(Sink):
    def __init__(self, connection: KafkaConnection) -> None:
        self._conn = connection.hold()

    def write(self, outputs: Sequence[Output]) -> list[bool]:
        return self._conn.loop.call(self._conn.write(outputs)) if outputs else []

    def dead_letter(self, message: Message, reason: str) -> None:
        self._conn.loop.call(self._conn.dead_letter(message, reason))

    def close(self) -> None:
        self._conn.release()


def open_kafka(bus: KafkaBus) -> tuple[KafkaSource, KafkaSink]:
    connection = KafkaConnection(bus)
    return KafkaSource(connection), KafkaSink(connection)


class KafkaPublisher(Publisher):
    """Produces events to the input topic (no key: spread over the partitions)."""

    def __init__(self, bus: KafkaBus) -> None:
        from aiokafka import AIOKafkaProducer

        self.bus, self.loop = bus, Loop()
        options = client_options(bus)

        async def start() -> Any:
            if bus.create_topics:
                await ensure_topics(bus, options)
            producer = AIOKafkaProducer(acks="all", linger_ms=5, **options)
            await producer.start()
            return producer

        try:
            self.producer = self.loop.call(start())
        except Exception:
            self.loop.close()
            raise

    def publish(self, bodies: Sequence[bytes]) -> None:
        async def publish_all() -> None:
            sends = [await self.producer.send(self.bus.topic, b) for b in bodies]
            await asyncio.gather(*sends)

        self.loop.call(publish_all())

    def close(self) -> None:
        try:
            self.loop.call(self.producer.stop(), timeout=30)
        finally:
            self.loop.close()
