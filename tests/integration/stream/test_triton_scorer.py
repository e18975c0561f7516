"""A stream worker that scores on the session's tritonserver (`--url`) instead of in-process:
the digits ensemble over msgpack events carrying PNG bytes; an undecodable image fails alone."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import redis
from PIL import Image

from tests.integration.stream.conftest import wait_for
from tritonpipe.server import TritonServer
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_triton_backed_worker(
    redis_bus: RedisServer, server: TritonServer, job: Callable[..., Path]
) -> None:
    tag = job.tag  # type: ignore[attr-defined]
    bus = {"type": "redis", "url": redis_bus.url, "stream": f"{tag}:in", "output": f"{tag}:out",
           "dead_letter": f"{tag}:dead"}  # fmt: skip
    config = load_config(
        job(
            bus,
            format="msgpack",
            name="digits",
            inputs={"image": {"field": "png", "dtype": "BYTES"}},
        )
    )
    r = redis.Redis.from_url(redis_bus.url)
    for i in range(12):
        r.xadd(f"{tag}:in", {"data": msgpack.packb({"id": f"d{i}", "png": _png(i)})})
    r.xadd(f"{tag}:in", {"data": msgpack.packb({"id": "bad", "png": b"not a png"})})
    worker = build_worker(config, consumer="t", url=server.http_url)
    try:
        wait_for(lambda: worker.step() == 0 and r.xlen(f"{tag}:out") >= 12, 60, "scoring")
    finally:
        worker.close()
    records = [json.loads(f[b"body"]) for _, f in r.xrange(f"{tag}:out")]
    assert sorted(rec["id"] for rec in records) == sorted(f"d{i}" for i in range(12))
    assert all(len(rec["outputs"]["labels"]) == 3 for rec in records)
    dead = [f[b"reason"].decode() for _, f in r.xrange(f"{tag}:dead")]
    assert len(dead) == 1 and "not a decodable image" in dead[0], dead
