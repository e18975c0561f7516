"""Ack after write, on a real Redis and a real NATS JetStream: a worker whose output write fails
leaves its events pending (Redis: the output stream key holds a string, so XADD is refused;
NATS: the output stream is full and discards new messages, so only some publishes land); they
are delivered again once the write works, and every event ends with exactly one output."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.integration.stream.conftest import events
from tritonpipe.server.nats_server import NatsServer
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config, status
from tritonpipe.stream.config import NatsBus
from tritonpipe.stream.nats_bus import output_stream
from tritonpipe.stream.replay import replay


def test_a_failed_output_write_leaves_events_pending_until_written(
    redis_bus: RedisServer, job: Callable[..., Path]
) -> None:
    tag = job.tag  # type: ignore[attr-defined]
    bus = {
        "type": "redis",
        "url": redis_bus.url,
        "stream": f"{tag}:in",
        "output": f"{tag}:out",
        "dead_letter": f"{tag}:dead",
        "claim_idle_ms": 200,
    }
    config = load_config(job(bus))
    r = redis.Redis.from_url(redis_bus.url)
    sent = events(6)
    assert replay(config, sent) == 6
    r.set(f"{tag}:out", "not a stream")  # the next output write fails: WRONGTYPE
    failing = build_worker(config, consumer="failing")
    try:
        messages = failing.source.read(10, 1000)
        assert len(messages) == 6
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            failing.handle(messages)
    finally:
        failing.close()
    pending = {
        c["name"].decode(): int(c["pending"]) for c in r.xinfo_consumers(f"{tag}:in", "tritonpipe")
    }
    assert pending["failing"] == 6  # nothing was acknowledged
    assert not r.exists(f"{tag}:dead")  # nor dead-lettered: a failed write is retried

    r.delete(f"{tag}:out")  # writes work again
    time.sleep(0.3)  # past claim_idle_ms: another worker claims the failed worker's events
    rescuer = build_worker(config, consumer="rescuer")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and r.xlen(f"{tag}:out") < 6:
            rescuer.step()
        rescuer.step()  # a further pass finds nothing left to redo
    finally:
        rescuer.close()
    ids = [json.loads(f[b"body"])["id"] for _, f in r.xrange(f"{tag}:out")]
    assert sorted(ids) == sorted(e["id"] for e in sent)  # one output per event
    left = sum(int(c["pending"]) for c in r.xinfo_consumers(f"{tag}:in", "tritonpipe"))
    assert left == 0


def _output_stream(bus: NatsBus, max_msgs: int) -> None:
    """Create (or update) the job's output stream holding at most ``max_msgs`` messages and
    refusing new ones past that (-1: no limit), with the worker's deduplication window."""

    async def configure() -> None:
        import nats
        from nats.js.api import DiscardPolicy, StreamConfig

        nc = await nats.connect(bus.url)
        js = nc.jetstream()
        config = StreamConfig(
            name=output_stream(bus),
            subjects=[bus.output],
            max_msgs=max_msgs,
            discard=DiscardPolicy.NEW,
            duplicate_window=bus.dedupe_window_s,
        )
        try:
            await js.update_stream(config)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
        await nc.close()

    asyncio.run(configure())


def _output_ids(bus: NatsBus) -> list[str]:
    async def read() -> list[str]:
        import nats

        nc = await nats.connect(bus.url)
        js = nc.jetstream()
        info = await js.stream_info(output_stream(bus))
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            ids.append(json.loads((await js.get_msg(output_stream(bus), seq)).data)["id"])
        await nc.close()
        return ids

    return asyncio.run(read())


def test_a_failed_output_write_on_nats_leaves_events_pending_until_written(
    nats_bus: NatsServer, job: Callable[..., Path]
) -> None:
    tag = job.tag  # type: ignore[attr-defined]
    bus = {
        "type": "nats",
        "url": nats_bus.url,
        "stream": tag.upper(),
        "subject": f"{tag}.in",
        "output": f"{tag}.out",
        "dead_letter": f"{tag}.dead",
        "ack_wait_s": 1.0,
    }
    config = load_config(job(bus))
    assert isinstance(config.bus, NatsBus)
    _output_stream(config.bus, max_msgs=3)  # the batch's last three publishes are refused
    sent = events(6)
    assert replay(config, sent) == 6
    failing = build_worker(config, consumer="failing")
    try:
        messages = failing.source.read(10, 1000)
        assert len(messages) == 6
        with pytest.raises(Exception, match="maximum messages"):
            failing.handle(messages)
    finally:
        failing.close()
    state = status(config)
    assert state["pending"] == 6  # nothing was acknowledged, not even the three written
    assert state["outputs"] == 3 and state["dead_letters"] == 0

    _output_stream(config.bus, max_msgs=-1)  # writes work again
    time.sleep(1.2)  # past ack_wait_s: the server delivers the six again
    rescuer = build_worker(config, consumer="rescuer")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and rescuer.counts.scored + rescuer.counts.duplicates < 6:
            rescuer.step()
        rescuer.step()  # a further pass finds nothing left to redo
        assert (rescuer.counts.scored, rescuer.counts.duplicates) == (3, 3)
    finally:
        rescuer.close()
    assert sorted(_output_ids(config.bus)) == sorted(e["id"] for e in sent)  # one output each
    state = status(config)
    assert (state["pending"], state["lag"], state["dead_letters"]) == (0, 0, 0)
