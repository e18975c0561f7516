"""Redis Streams workers: at least once with outputs exactly once by event id, dead letters,
SIGTERM, status and the metrics endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.integration.stream.conftest import (
    ROOT,
    dumps,
    events,
    start_worker,
    stop_worker,
    wait_for,
)
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config
from tritonpipe.stream.replay import replay


def _bus(server: RedisServer, tag: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "redis",
        "url": server.url,
        "stream": f"{tag}:in",
        "output": f"{tag}:out",
        "dead_letter": f"{tag}:dead",
        **extra,
    }


def _outputs(r: redis.Redis, stream: str) -> list[dict[str, Any]]:
    return [json.loads(f[b"body"]) for _, f in r.xrange(stream)]


def _pending(r: redis.Redis, stream: str, group: str = "tritonpipe") -> dict[str, int]:
    return {c["name"].decode(): int(c["pending"]) for c in r.xinfo_consumers(stream, group)}


def test_kill_and_sigterm_leave_one_record_per_event(
    redis_bus: RedisServer, job: Callable[..., Path]
) -> None:
    """Worker a is killed with -9 mid-stream, b is stopped with SIGTERM mid-stream, c claims a's
    pending events after the idle timeout: every event has exactly one output record."""
    tag = job.tag  # type: ignore[attr-defined]
    config = job(_bus(redis_bus, tag, claim_idle_ms=1000))
    r = redis.Redis.from_url(redis_bus.url)
    n = 400
    sent = events(n)
    assert replay(load_config(config), sent) == n

    a = start_worker(config, "a")
    wait_for(lambda: r.xlen(f"{tag}:out") >= 40, 60, "worker a to score some events")
    a.kill()  # SIGKILL: no chance to ack what it holds
    a.wait()
    held_by_a = _pending(r, f"{tag}:in").get("a", 0)
    scored_before_b = r.xlen(f"{tag}:out")
    assert scored_before_b < n, "the worker finished before it could be killed"

    b = start_worker(config, "b")
    wait_for(lambda: r.xlen(f"{tag}:out") >= scored_before_b + 80, 60, "worker b to score")
    assert "worker b stopped" in stop_worker(b, config, "b")
    assert _pending(r, f"{tag}:in")["b"] == 0  # SIGTERM: the batch in hand was acked

    c = start_worker(config, "c")
    try:
        wait_for(lambda: r.xlen(f"{tag}:out") >= n, 60, "worker c to score the rest")
        wait_for(lambda: sum(_pending(r, f"{tag}:in").values()) == 0, 10, "all acks")
    finally:
        stop_worker(c, config, "c")
    records = _outputs(r, f"{tag}:out")
    ids = [rec["id"] for rec in records]
    assert len(ids) == n and sorted(set(ids)) == sorted(e["id"] for e in sent)  # 0 lost, 0 dup
    by_id = {rec["id"]: rec for rec in records}
    assert by_id["e7"]["outputs"]["y"] == 16.0  # 2 * (7 + 1)
    assert held_by_a == 0 or {rec["consumer"] for rec in records} >= {"c"}


def test_poison_events_are_dead_lettered_with_reason(
    redis_bus: RedisServer, job: Callable[..., Path], tmp_path: Path
) -> None:
    tag = job.tag  # type: ignore[attr-defined]
    config = load_config(
        job(_bus(redis_bus, tag), log={"type": "parquet", "path": str(tmp_path / "logs")})
    )
    r = redis.Redis.from_url(redis_bus.url)
    good = events(20)
    r.xadd(f"{tag}:in", {"data": b"{not json"})
    r.xadd(f"{tag}:in", {"data": dumps({"id": "no-x", "y": 1})})
    r.xadd(f"{tag}:in", {"data": dumps({"id": "neg", "x": [-1.0, 0.0]})})
    r.xadd(f"{tag}:in", {"data": dumps({"id": "short", "x": [1.0]})})
    replay(config, good)
    worker = build_worker(config, consumer="p", metrics_port=0)
    try:
        wait_for(lambda: worker.step() == 0 and r.xlen(f"{tag}:out") >= 20, 30, "scoring")
        port = worker.metrics.port  # type: ignore[union-attr]
        from urllib.request import urlopen

        metrics = urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        worker.close()
    dead = {f[b"reason"].decode() for _, f in r.xrange(f"{tag}:dead")}
    assert len(dead) == 4
    assert any("payload is not json" in d for d in dead)
    assert "decode: input 'x': missing" in dead
    assert any("input 'x' is negative" in d for d in dead)
    assert "decode: input 'x': 1 values, wants FP32[2]" in dead, dead
    assert sorted(rec["id"] for rec in _outputs(r, f"{tag}:out")) == sorted(e["id"] for e in good)
    assert sum(_pending(r, f"{tag}:in").values()) == 0
    assert (
        f'tritonpipe_stream_events_total{{outcome="dead_letter",stream="{tag}:in"}} 4.0' in metrics
    )
    assert f'tritonpipe_stream_lag_records{{stream="{tag}:in"}}' in metrics
    assert "tritonpipe_stream_e2e_seconds_count" in metrics
    from tritonpipe.predlog import read_logs

    logs = read_logs(str(tmp_path / "logs"))
    assert sorted(logs["id"]) == sorted(e["id"] for e in good)

    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonpipe.cli",
            "stream",
            "status",
            str(config.base / f"{tag}.yaml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        "dead letters  4" in status and "outputs       20" in status and "lag           0" in status
    )


def test_redelivered_event_writes_no_second_record(
    redis_bus: RedisServer, job: Callable[..., Path]
) -> None:
    tag = job.tag  # type: ignore[attr-defined]
    config = load_config(job(_bus(redis_bus, tag), format="msgpack"))
    r = redis.Redis.from_url(redis_bus.url)
    replay(config, events(3))
    worker = build_worker(config, consumer="d")
    try:
        messages = worker.source.read(10, 100)
        worker.handle(messages)
        worker.handle(messages)  # as if the acks were lost and the events came back
    finally:
        worker.close()
    assert r.xlen(f"{tag}:out") == 3
    assert worker.counts.scored == 3 and worker.counts.duplicates == 3
