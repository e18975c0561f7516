"""Ack after write, on a real Redis: a worker whose output write fails leaves its events pending
(the output stream key holds a string, so Redis refuses XADD); another worker claims them once
the write works again, and every event ends with exactly one output."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.integration.stream.conftest import events
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config
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
