"""What a worker does with each event it cannot score, on real Redis and NATS servers: a string
output is written as a string, an output that cannot be encoded dead-letters its event (never a
bus error), an event without its id or a payload under another field is refused with that
reason, and a stream input decodes to the dtype the pipeline declares."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
import yaml

from tests.integration.stream.conftest import wait_for
from tritonpipe.server.nats_server import NatsServer
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config
from tritonpipe.stream.config import JobConfig
from tritonpipe.stream.nats_bus import NatsPublisher, NatsSource, dead_stream, output_stream
from tritonpipe.stream.worker import Worker

# Raw readings (float64, as pandas gives them) and a sensor type in; a text label and a score
# out. A sensor type "raw" makes the stage return bytes that are not text.
STAGE = """
import numpy as np


def alert(reading: np.ndarray, sensor_type: np.ndarray) -> dict[str, np.ndarray]:
    if reading.dtype != np.float64:
        raise TypeError(f"reading is {reading.dtype}, not float64")
    score = reading.mean(axis=1, keepdims=True)
    labels = []
    for kind, value in zip(sensor_type[:, 0], score[:, 0]):
        if kind == b"raw":
            labels.append(b"\\xff\\xfe")
        else:
            labels.append(b"alert" if value > 1.0 else b"ok")
    return {"alert": np.array(labels, dtype=object).reshape(-1, 1), "score": score}
"""


@pytest.fixture(scope="module")
def sensors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sensors")
    (root / "stages.py").write_text(STAGE)
    spec = {
        "stages": {
            "alert": {
                "function": "stages.py:alert",
                "inputs": [
                    {"name": "reading", "dtype": "FP64", "shape": [3]},
                    {"name": "sensor_type", "dtype": "BYTES", "shape": [1]},
                ],
                "outputs": [
                    {"name": "alert", "dtype": "BYTES", "shape": [1]},
                    {"name": "score", "dtype": "FP64", "shape": [1]},
                ],
            }
        }
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return root / "pipeline.yaml"


def _bus(kind: str, redis_bus: RedisServer, nats_bus: NatsServer, tag: str) -> dict[str, Any]:
    if kind == "redis":
        return {"type": "redis", "url": redis_bus.url, "stream": f"{tag}:in",
                "output": f"{tag}:out", "dead_letter": f"{tag}:dead"}  # fmt: skip
    return {"type": "nats", "url": nats_bus.url, "stream": tag.upper(), "subject": f"{tag}.in",
            "output": f"{tag}.out", "dead_letter": f"{tag}.dead"}  # fmt: skip


def _job(tmp_path: Path, pipeline: Path, bus: dict[str, Any], **extra: Any) -> JobConfig:
    config = {
        "pipeline": str(pipeline),
        "name": "alert",
        "bus": bus,
        "inputs": {"reading": {"field": "reading"}, "sensor_type": {"field": "sensor_type"}},
        "batch": {"max_events": 8, "max_wait_ms": 10},
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


def _publish(config: JobConfig, events: list[dict[str, Any]]) -> None:
    encode = msgpack.packb if config.format == "msgpack" else (lambda e: json.dumps(e).encode())
    bodies = [encode(e) for e in events]
    if config.bus.type == "nats":
        out = NatsPublisher(config.bus)
        out.publish(bodies)
        out.close()
    else:
        r = redis.Redis.from_url(config.bus.url)
        for body in bodies:
            r.xadd(config.bus.stream, {config.payload_field: body})


def _messages(url: str, stream: str) -> list[tuple[dict[str, str], bytes]]:
    """Every message of a JetStream stream (none while it is empty or not there yet)."""

    async def read() -> list[tuple[dict[str, str], bytes]]:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(url)
        js = nc.jetstream()
        out = []
        try:
            state = (await js.stream_info(stream)).state
        except NotFoundError:
            state = None
        if state is not None and state.messages:
            for seq in range(state.first_seq, state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append((dict(msg.headers or {}), msg.data))
        await nc.close()
        return out

    return asyncio.run(read())


def _results(config: JobConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """Output records and dead-letter reasons, read back from the bus."""
    bus = config.bus
    if bus.type == "nats":
        outputs = [json.loads(b) for _, b in _messages(bus.url, output_stream(bus))]
        dead = [h["Tritonpipe-Reason"] for h, _ in _messages(bus.url, dead_stream(bus))]
        return outputs, dead
    r = redis.Redis.from_url(bus.url)
    outputs = [json.loads(f[b"body"]) for _, f in r.xrange(bus.output)]
    return outputs, [f[b"reason"].decode() for _, f in r.xrange(bus.dead_letter)]


def _drain(worker: Worker, until: Callable[[], bool]) -> None:
    """Run the worker's own loop (bus errors and all) until ``until`` holds, then stop it."""
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for(until, 60, "the worker to handle every event")
    finally:
        worker.stop.set()
        runner.join(30)


def _reading(i: int, sensor_type: str = "motor") -> dict[str, Any]:
    return {"id": f"e{i}", "reading": [0.5 * i, 1.0, 1.5], "sensor_type": sensor_type}


@pytest.mark.parametrize(
    ("kind", "payload"), [("redis", "json"), ("redis", "msgpack"), ("nats", "json")]
)
def test_string_output_is_written_and_an_unencodable_one_dead_letters_its_event(
    kind: str,
    payload: str,
    sensors: Path,
    redis_bus: RedisServer,
    nats_bus: NatsServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Issue 18 item 1: a BYTES output is a string in the record; one that is not text fails
    its own event (dead letter, acknowledged), never the bus."""
    tag = f"enc_{kind}_{payload}"
    inputs = {"reading": {"field": "reading", "dtype": "FP64"},
              "sensor_type": {"field": "sensor_type", "dtype": "BYTES"}}  # fmt: skip
    config = _job(
        tmp_path, sensors, _bus(kind, redis_bus, nats_bus, tag), format=payload, inputs=inputs
    )
    _publish(config, [_reading(i) for i in range(6)] + [_reading(6, "raw")])
    worker = build_worker(config, consumer="w")
    try:
        _drain(worker, lambda: sum(map(len, _results(config))) >= 7)
    finally:
        worker.close()
    outputs, dead = _results(config)
    assert worker.counts.bus_errors == 0
    by_id = {o["id"]: o["outputs"] for o in outputs}
    assert sorted(by_id) == [f"e{i}" for i in range(6)]
    assert by_id["e1"] == {"alert": "ok", "score": 1.0}
    assert by_id["e5"]["alert"] == "alert"
    assert len(dead) == 1 and dead[0] == "encode: output 'alert': not UTF-8 text (b'\\xff\\xfe')", (
        dead
    )
    assert worker.counts.dead == 1 and worker.counts.scored == 6


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_input_dtype_and_shape_default_to_the_pipeline(
    kind: str, sensors: Path, redis_bus: RedisServer, nats_bus: NatsServer, tmp_path: Path
) -> None:
    """Issue 18 item 4: no dtype in the job: the readings reach the stage as float64 and the
    sensor type as text (FP32 was the default, so 'motor' was dead-lettered)."""
    config = _job(tmp_path, sensors, _bus(kind, redis_bus, nats_bus, f"dtype_{kind}"))
    assert all(i.dtype is None for i in config.inputs.values())
    _publish(config, [_reading(i) for i in range(4)])
    worker = build_worker(config, consumer="w")
    try:
        assert {r.name: r.spec.describe() for r in worker.contract.inputs} == {
            "reading": "FP64[3]",
            "sensor_type": "BYTES[1]",
        }
        _drain(worker, lambda: sum(map(len, _results(config))) >= 4)
    finally:
        worker.close()
    outputs, dead = _results(config)
    assert dead == []
    assert sorted(o["id"] for o in outputs) == ["e0", "e1", "e2", "e3"]


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_an_event_without_its_id_is_refused(
    kind: str, sensors: Path, redis_bus: RedisServer, nats_bus: NatsServer, tmp_path: Path
) -> None:
    """Issue 18 item 5: not filed under the bus's own entry id."""
    config = _job(tmp_path, sensors, _bus(kind, redis_bus, nats_bus, f"noid_{kind}"))
    no_id = {k: v for k, v in _reading(1).items() if k != "id"}
    _publish(config, [_reading(0), no_id, {**_reading(2), "id": None}])
    worker = build_worker(config, consumer="w")
    try:
        _drain(worker, lambda: sum(map(len, _results(config))) >= 3)
    finally:
        worker.close()
    outputs, dead = _results(config)
    assert [o["id"] for o in outputs] == ["e0"]
    assert dead == ["decode: id 'id': missing"] * 2


def test_a_payload_under_another_field_is_named(
    sensors: Path, redis_bus: RedisServer, nats_bus: NatsServer, tmp_path: Path
) -> None:
    """Issue 18 item 5: a Redis entry whose payload is not under the job's payload_field says
    so (it was `payload is not json ... (char 0)`)."""
    config = _job(tmp_path, sensors, _bus("redis", redis_bus, nats_bus, "field"))
    r = redis.Redis.from_url(redis_bus.url)
    r.xadd(config.bus.stream, {"payload": json.dumps(_reading(0)).encode()})
    _publish(config, [_reading(1)])
    worker = build_worker(config, consumer="w")
    try:
        _drain(worker, lambda: sum(map(len, _results(config))) >= 2)
    finally:
        worker.close()
    outputs, dead = _results(config)
    assert [o["id"] for o in outputs] == ["e1"]
    assert dead == [
        "decode: no payload: the entry has no field 'data' (the job's payload_field); "
        "it has 'payload'"
    ]
    assert sum(int(c["pending"]) for c in r.xinfo_consumers(config.bus.stream, "tritonpipe")) == 0


def test_a_nats_fetch_that_times_out_is_no_messages(
    sensors: Path, redis_bus: RedisServer, nats_bus: NatsServer, tmp_path: Path
) -> None:
    """Issue 18 item 8: nats-py ends a short fetch on an empty stream with a plain
    asyncio.TimeoutError; that is "nothing to read", not a bus error."""
    config = _job(tmp_path, sensors, _bus("nats", redis_bus, nats_bus, "idle"))
    source = NatsSource(config.bus)  # type: ignore[arg-type]
    try:
        for wait_ms in [1, 2, 3, 5] * 10:
            assert source.read(8, wait_ms) == []
    finally:
        source.close()
    assert issubclass(asyncio.TimeoutError, TimeoutError)  # the one except clause covers both
    worker = build_worker(config, consumer="w")
    try:
        _publish(config, [_reading(0)])
        _drain(worker, lambda: len(_results(config)[0]) >= 1)
        stopper = threading.Timer(2.0, worker.stop.set)  # idle on an empty stream for 2 s
        stopper.start()
        worker.stop.clear()
        worker.run()
    finally:
        worker.close()
    assert worker.counts.bus_errors == 0
