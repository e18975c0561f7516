"""Worker.run and a failing bus: a step that hits a bus error is retried after a pause, nothing of
it acknowledged; a bus that keeps failing ends the run with an error naming it. The bus is faked
(below the level tested); the worker, decoding and accounting are the real ones."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from tritonpipe.errors import TritonPipeError
from tritonpipe.stream import Message, load_config
from tritonpipe.stream.bus import Output, Sink, Source
from tritonpipe.stream.scoring import Result, Scorer
from tritonpipe.stream.worker import Worker
from tritonpipe.tensors import Array

CONFIG = """
pipeline: pipeline.yaml
name: score
bus: {type: redis, stream: in, output: out, dead_letter: dead}
inputs:
  x: {field: x}
batch: {max_events: 4, max_wait_ms: 1}
"""


class Bus(Source, Sink):
    """Messages in memory, redelivered until acked; ``fail`` makes the next reads/acks raise."""

    def __init__(self, n: int) -> None:
        self.unacked = {
            str(i): Message(
                id=str(i), body=json.dumps({"id": f"e{i}", "x": [1.0, float(i)]}).encode()
            )
            for i in range(n)
        }
        self.outputs: dict[str, bytes] = {}
        self.failures = {"read": 0, "ack": 0}
        self.worker: Worker | None = None

    def read(self, max_events: int, wait_ms: int) -> list[Message]:
        if self.failures["read"]:
            self.failures["read"] -= 1
            raise ConnectionError("bus unreachable")
        if not self.unacked and self.worker is not None:
            self.worker.stop.set()  # all done: end the run
        return list(self.unacked.values())[:max_events]

    def ack(self, messages: Sequence[Message]) -> None:
        if self.failures["ack"]:
            self.failures["ack"] -= 1
            raise TimeoutError("ack not confirmed")
        for m in messages:
            del self.unacked[m.id]

    def lag(self) -> int | None:
        return len(self.unacked)

    def write(self, outputs: Sequence[Output]) -> list[bool]:
        new = [o.key not in self.outputs for o in outputs]
        self.outputs.update({o.key: o.body for o in outputs})
        return new

    def dead_letter(self, message: Message, reason: str) -> None:
        raise AssertionError(f"nothing here is poison: {reason}")


class Double(Scorer):
    name = "double"

    def score(self, requests: Sequence[Mapping[str, Array]]) -> list[Result]:
        return [{"y": np.asarray(r["x"]).sum(axis=-1, keepdims=True) * 2} for r in requests]


def _worker(tmp_path: Path, bus: Bus) -> Worker:
    path = tmp_path / "job.yaml"
    path.write_text(CONFIG)
    worker = Worker(load_config(path), bus, bus, Double(), consumer="w")
    bus.worker = worker
    return worker


def test_bus_errors_are_retried_and_every_event_scored_once(tmp_path: Path) -> None:
    bus = Bus(10)
    bus.failures = {"read": 2, "ack": 1}
    worker = _worker(tmp_path, bus)
    counts = worker.run()
    assert counts.bus_errors == 3
    assert not bus.unacked and sorted(bus.outputs) == sorted(f"e{i}" for i in range(10))
    # The first batch was written, then its ack failed: delivered again, its outputs already
    # there, it counts as duplicates (written once: the sink is idempotent by event id).
    assert counts.scored == 6 and counts.duplicates == 4
    assert json.loads(bus.outputs["e3"])["outputs"]["y"] == 8.0  # 2 * (1 + 3)


def test_a_bus_that_keeps_failing_ends_the_run_naming_the_error(tmp_path: Path) -> None:
    bus = Bus(3)
    bus.failures["read"] = 10**6
    worker = _worker(tmp_path, bus)
    worker.bus_retry_s = 1.0
    with pytest.raises(
        TritonPipeError,
        match=r"stream 'in': the bus kept failing for \d+s; .*"
        r"ConnectionError: bus unreachable",
    ):
        worker.run()
    assert 2 <= worker.counts.bus_errors <= 4  # 0.5 s, then 1 s: backing off, not spinning
