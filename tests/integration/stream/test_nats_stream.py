"""NATS JetStream workers through the same interface: a killed worker's events are redelivered
after ack_wait, outputs stay one per event id, poison events are dead-lettered with the reason."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.stream.conftest import dumps, events, start_worker, stop_worker, wait_for
from tritonpipe.server.nats_server import NatsServer
from tritonpipe.stream import Output, build_worker, load_config, status
from tritonpipe.stream.nats_bus import NatsPublisher, dead_stream, output_stream
from tritonpipe.stream.replay import replay
from tritonpipe.stream.worker import decode


def _bus(server: NatsServer, tag: str, **extra: Any) -> dict[str, Any]:
    name = tag.upper()
    return {
        "type": "nats",
        "url": server.url,
        "stream": name,
        "subject": f"{tag}.in",
        "output": f"{tag}.out",
        "dead_letter": f"{tag}.dead",
        **extra,
    }


def _messages(url: str, stream: str) -> list[tuple[dict[str, str], bytes]]:
    async def read() -> list[tuple[dict[str, str], bytes]]:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append((dict(msg.headers or {}), msg.data))
        await nc.close()
        return out

    return asyncio.run(read())


def test_killed_worker_events_are_redelivered_once(
    nats_bus: NatsServer, job: Callable[..., Path]
) -> None:
    tag = job.tag  # type: ignore[attr-defined]
    config_path = job(_bus(nats_bus, tag, ack_wait_s=1.5))
    config = load_config(config_path)
    n = 300
    sent = events(n)
    replay(config, sent)
    poison = NatsPublisher(config.bus)  # type: ignore[arg-type]
    poison.publish([b"\x00garbage", dumps({"id": "neg", "x": [-2.0, 1.0]})])
    poison.close()

    a = start_worker(config_path, "a")
    wait_for(lambda: status(config)["outputs"] >= 40, 60, "worker a to score some events")
    a.kill()
    a.wait()
    assert status(config)["outputs"] < n, "the worker finished before it could be killed"

    b = start_worker(config_path, "b")
    try:
        wait_for(lambda: status(config)["outputs"] >= n and status(config)["pending"] == 0, 60, "b")
    finally:
        stop_worker(b, config_path, "b")
    records = [json.loads(body) for _, body in _messages(nats_bus.url, output_stream(config.bus))]  # type: ignore[arg-type]
    ids = [r["id"] for r in records]
    assert len(ids) == n and sorted(set(ids)) == sorted(e["id"] for e in sent)
    dead = [h["Tritonpipe-Reason"] for h, _ in _messages(nats_bus.url, dead_stream(config.bus))]  # type: ignore[arg-type]
    assert len(dead) == 2
    assert any("payload is not json" in d for d in dead)
    assert any("input 'x' is negative" in d for d in dead)
    info = status(config)
    assert info["lag"] == 0 and info["pending"] == 0 and info["dead_letters"] == 2


def test_nats_redelivery_is_deduplicated(nats_bus: NatsServer, job: Callable[..., Path]) -> None:
    tag = job.tag  # type: ignore[attr-defined]
    config = load_config(job(_bus(nats_bus, tag), format="msgpack"))
    replay(config, events(5))
    worker = build_worker(config, consumer="d")
    try:
        messages = worker.source.read(10, 500)
        assert len(messages) == 5
        worker.handle(messages)
        worker.sink.write([])  # nothing to write is fine
        again = [decode(config, m) for m in messages]
        assert [e.id for e in again] == [f"e{i}" for i in range(5)]
        assert worker.sink.write([Output(key=e.id, body=b"{}") for e in again]) == [False] * 5
    finally:
        worker.close()
    assert status(config)["outputs"] == 5


def test_worker_rides_out_a_nats_server_restart(tmp_path: Path, job: Callable[..., Path]) -> None:
    """The server goes away mid-stream and comes back on the same port and store: the worker
    reconnects, retries the steps that failed, and every event still has exactly one output."""
    server = NatsServer(tmp_path / "store").start()
    worker = None
    try:
        config_path = job(_bus(server, job.tag, ack_wait_s=2.0))  # type: ignore[attr-defined]
        config = load_config(config_path)
        n = 3000
        sent = events(n)
        replay(config, sent)
        worker = start_worker(config_path, "w")
        wait_for(lambda: status(config)["outputs"] >= 100, 60, "the worker to score some events")
        server.stop()
        time.sleep(4.0)  # longer than nats-py's default reconnect budget here (3 x 2 s)
        server.start()
        wait_for(
            lambda: status(config)["outputs"] >= n and status(config)["pending"] == 0,
            90,
            "every event scored after the restart",
        )
        out = stop_worker(worker, config_path, "w")
        worker = None
        assert "nats: disconnected" in out and "nats: reconnected" in out, out
        records = [json.loads(b) for _, b in _messages(server.url, output_stream(config.bus))]  # type: ignore[arg-type]
        ids = [r["id"] for r in records]
        assert len(ids) == n and sorted(set(ids)) == sorted(e["id"] for e in sent)
    finally:
        if worker is not None:
            worker.kill()
        server.stop()
