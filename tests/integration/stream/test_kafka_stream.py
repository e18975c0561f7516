"""Kafka workers against a real Kafka-protocol broker (Tansu): partitions move from a worker
killed with -9 to the others and every event ends with exactly one output record; poison events
are dead-lettered with the reason in a header; a redelivered event writes no second record, even
from a worker that did not write it; a broker restart on durable (S3) storage loses nothing and
scores nothing twice."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.stream.conftest import (
    ROOT,
    dumps,
    events,
    start_worker,
    stop_worker,
    wait_for,
    worker_log,
)
from tritonpipe.server.kafka_server import KafkaServer, S3Server
from tritonpipe.stream import Output, build_worker, load_config, status
from tritonpipe.stream.config import KafkaBus
from tritonpipe.stream.kafka_bus import KafkaPublisher
from tritonpipe.stream.kafka_topics import read_dead_letters, read_outputs
from tritonpipe.stream.replay import replay


def _bus(server: KafkaServer, tag: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "kafka",
        "bootstrap_servers": server.bootstrap,
        "topic": f"{tag}.in",
        "output": f"{tag}.out",
        "dead_letter": f"{tag}.dead",
        "partitions": 4,
        "session_timeout_ms": 6000,
        "retry_after_ms": 3000,
        **extra,
    }


def _ids(bus: KafkaBus) -> Counter[str]:
    """Output records per event id, every record the topic holds (duplicates included)."""
    return Counter(key for key, _ in read_outputs(bus, unique=False))


def _done(bus: KafkaBus, n: int) -> bool:
    from tritonpipe.stream.kafka_topics import status as kafka_status

    info = kafka_status(bus)
    return bool(info["outputs"] >= n and info["lag"] == 0)


def _status(config: Any) -> dict[str, Any]:
    info: dict[str, Any] = status(config)
    return info


def test_partitions_of_a_killed_worker_move_and_each_event_has_one_record(
    kafka_bus: KafkaServer, job: Callable[..., Path]
) -> None:
    """Two workers share a 4-partition topic while events arrive; a is killed with -9, its
    partitions move to b after the session timeout; b is stopped with SIGTERM mid-stream (exit
    0), c finishes: every event has exactly one output record, counted by id."""
    tag = job.tag  # type: ignore[attr-defined]
    config_path = job(_bus(kafka_bus, tag), batch={"max_events": 4, "max_wait_ms": 10})
    config = load_config(config_path)
    bus = config.bus
    assert isinstance(bus, KafkaBus)
    n = 2400
    sent = events(n)
    producer = threading.Thread(target=replay, args=(config, sent), kwargs={"rate": 80})
    producer.start()
    outputs = lambda: _status(config)["outputs"]  # noqa: E731
    logs = lambda c: worker_log(config_path, c).read_text(errors="replace")  # noqa: E731
    a = start_worker(config_path, "a")
    b = c = None
    try:
        wait_for(lambda: outputs() >= 40, 90, "worker a to score some events")
        b = start_worker(config_path, "b")
        wait_for(lambda: "assigned" in logs("b"), 90, "the group to give b partitions")
        before = outputs()
        wait_for(lambda: outputs() >= before + 40, 60, "both workers to score")
        a.kill()  # SIGKILL: what a holds is neither written nor committed
        a.wait()
        wait_for(lambda: "partitions [0, 1, 2, 3]" in logs("b"), 60, "a's partitions to move to b")
        before = outputs()
        wait_for(lambda: outputs() >= before + 40, 60, "b to score a's partitions")
        assert outputs() < n, "the stream ended before b could be stopped mid-stream"
        assert "worker b stopped" in stop_worker(b, config_path, "b")  # SIGTERM: exit 0
        b = None
        c = start_worker(config_path, "c")
        producer.join()
        wait_for(lambda: _done(bus, n), 120, "worker c to score the rest")
    finally:
        for worker in (a, b):
            if worker is not None and worker.poll() is None:
                worker.kill()
        if c is not None:
            stop_worker(c, config_path, "c")
        producer.join()
    per_id = _ids(bus)
    assert sorted(per_id) == sorted(e["id"] for e in sent)  # nothing lost
    assert set(per_id.values()) == {1}, [k for k, v in per_id.items() if v > 1]  # no duplicate
    records = [json.loads(body) for _, body in read_outputs(bus)]
    assert {r["consumer"] for r in records} == {"a", "b", "c"}
    by_id = {r["id"]: r for r in records}
    assert by_id["e7"]["outputs"]["y"] == 16.0  # 2 * (7 + 1)


def test_poison_events_are_dead_lettered_with_reason_in_a_header(
    kafka_bus: KafkaServer, job: Callable[..., Path], tmp_path: Path
) -> None:
    tag = job.tag  # type: ignore[attr-defined]
    path = job(_bus(kafka_bus, tag), log={"type": "parquet", "path": str(tmp_path / "logs")})
    config = load_config(path)
    bus = config.bus
    assert isinstance(bus, KafkaBus)
    good = events(20)
    poison = KafkaPublisher(bus)
    poison.publish([
        b"{not json",
        dumps({"id": "no-x", "y": 1}),
        dumps({"id": "neg", "x": [-1.0, 0.0]}),
        dumps({"id": "short", "x": [1.0]}),
    ])  # fmt: skip
    poison.close()
    replay(config, good)
    worker = build_worker(config, consumer="p", metrics_port=0)
    try:
        wait_for(lambda: worker.step() == 0 and _done(bus, 20), 60, "scoring")
        time.sleep(1.1)  # the lag gauges are refreshed once a second
        worker.step()
        port = worker.metrics.port  # type: ignore[union-attr]
        from urllib.request import urlopen

        metrics = urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        worker.close()
    dead = read_dead_letters(bus)
    reasons = [h["tritonpipe-reason"] for h, _ in dead]
    assert len(reasons) == 4
    assert any("payload is not json" in d for d in reasons)
    assert "decode: input 'x': missing" in reasons, reasons
    assert any("input 'x' is negative" in d for d in reasons)
    assert "decode: input 'x': 1 values, wants FP32[2]" in reasons, reasons
    assert {body for _, body in dead} >= {b"{not json"}
    assert all(h["tritonpipe-source"].startswith(f"{tag}.in:") for h, _ in dead)
    assert sorted(_ids(bus)) == sorted(e["id"] for e in good)
    assert (
        f'tritonpipe_stream_events_total{{outcome="dead_letter",stream="{tag}.in"}} 4.0' in metrics
    )
    for p in range(4):
        line = f'tritonpipe_stream_partition_lag_records{{partition="{p}",stream="{tag}.in"}} 0.0'
        assert line in metrics, metrics
    from tritonpipe.predlog import read_logs

    assert sorted(read_logs(str(tmp_path / "logs"))["id"]) == sorted(e["id"] for e in good)

    shown = subprocess.run(
        [sys.executable, "-m", "tritonpipe.cli", "stream", "status", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dead letters  4" in shown and "outputs       20" in shown, shown
    assert "lag           0" in shown and "partition 3" in shown, shown


def test_a_redelivered_event_writes_no_second_record(
    kafka_bus: KafkaServer, job: Callable[..., Path]
) -> None:
    """Worker d writes outputs and dies before committing (its connection closes with nothing
    acknowledged); worker e gets the same events again and writes none of them a second time."""
    tag = job.tag  # type: ignore[attr-defined]
    config = load_config(job(_bus(kafka_bus, tag), format="msgpack"))
    bus = config.bus
    assert isinstance(bus, KafkaBus)
    replay(config, events(6))
    d = build_worker(config, consumer="d")
    try:
        messages: list[Any] = []
        wait_for(lambda: bool(messages.extend(d.source.read(10, 200))) or len(messages) >= 6,
                 60, "d to read the events")  # fmt: skip
        d.handle(messages[:3])
        d.handle(messages[:3])  # as if the commit were lost and the events came back
        assert d.counts.scored == 3 and d.counts.duplicates == 3
        from tritonpipe.stream import decode

        rest = [decode(config, m) for m in messages[3:]]
        assert d.sink.write([Output(key=e.id, body=b"{}") for e in rest]) == [True] * 3
    finally:
        d.source._conn.offsets.partitions.clear()  # type: ignore[attr-defined]  # commit nothing of the last 3
        d.close()
    e = build_worker(config, consumer="e")
    try:
        wait_for(lambda: e.step() == 0 and _done(bus, 6), 60, "e to handle the events again")
    finally:
        e.close()
    assert e.counts.scored == 0 and e.counts.duplicates == 3
    assert set(_ids(bus).values()) == {1} and len(_ids(bus)) == 6


@pytest.mark.long
def test_a_broker_restart_on_durable_storage_loses_and_duplicates_nothing(
    tmp_path: Path, job: Callable[..., Path]
) -> None:
    """Tansu on S3-compatible storage (moto) stops mid-stream and comes back on the same port:
    the worker retries the steps that failed and every event has exactly one output record."""
    s3 = S3Server(tmp_path / "s3").start()
    server = KafkaServer(tmp_path / "kafka", s3=s3).start()
    worker = None
    try:
        config_path = job(_bus(server, job.tag))  # type: ignore[attr-defined]
        config = load_config(config_path)
        bus = config.bus
        assert isinstance(bus, KafkaBus)
        n = 1500
        sent = events(n)
        replay(config, sent)
        worker = start_worker(config_path, "w")
        wait_for(lambda: _status(config)["outputs"] >= 100, 90, "the worker to score some")
        server.stop()
        time.sleep(3.0)
        server.start()
        wait_for(lambda: _done(bus, n), 180, "every event scored after the restart")
        stop_worker(worker, config_path, "w")
        worker = None
        out = worker_log(config_path, "w").read_text(errors="replace")
        # The restart was felt, and ridden out.
        assert "kafka client (one line in 5 s)" in out, out[-3000:]
        # Nothing lost, and the deduplicating reader sees one record per event.
        assert sorted(k for k, _ in read_outputs(bus)) == sorted(e["id"] for e in sent)
        # No event was scored twice. The topic itself may hold a second copy of a write whose
        # acknowledgement the restart cut off (the producer sent it again): byte-identical.
        first: dict[str, bytes] = {}
        for key, body in read_outputs(bus, unique=False):
            assert first.setdefault(key, body) == body, f"event {key} was scored twice"
    finally:
        if worker is not None:
            worker.kill()
        server.stop()
        s3.stop()
