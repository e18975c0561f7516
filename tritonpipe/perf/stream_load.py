"""Drive stream workers: replay events into a job's bus (Redis, NATS or Kafka) at a rate, run N
workers, and
report events/s, lag and end-to-end p50/p99 (producer stamp -> prediction written) until every
event is scored. `make fraud-stream` and the stream benchmark use it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.errors import PerfError
from tritonpipe.perf.stream_watch import Watch, watch
from tritonpipe.stream.config import JobConfig, KafkaBus
from tritonpipe.stream.replay import replay


@dataclass(frozen=True, kw_only=True)
class StreamRun:
    """What one replay measured."""

    workers: int
    rate: float
    events: int
    scored: int
    dead: int
    seconds: float  # first event published -> last prediction written
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_lag: int
    exit_codes: tuple[int, ...]


def start_workers(
    job: Path, n: int, logs: Path, *, url: str | None = None, threads: int = 1
) -> list[subprocess.Popen[bytes]]:
    """``n`` worker processes (``w0``, ``w1``, ...), each logging to ``logs/w<i>.log``."""
    procs = []
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cmd = [sys.executable, "-m", "tritonpipe.cli", "stream", "run", str(job)]
        cmd += ["--consumer", f"w{i}", "--threads", str(threads)]
        cmd += ["--url", url] if url else []
        out = (logs / f"w{i}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env))
    return procs


def _ready(
    procs: list[subprocess.Popen[bytes]], logs: Path, timeout_s: float, joined: str = ""
) -> None:
    """Wait until every worker has loaded its pipeline (it prints ``worker w<i>: ...``) and, with
    ``joined``, has logged that line too (Kafka: its partitions were assigned, so the group's
    first rebalances are not in the measured window)."""
    deadline = time.monotonic() + timeout_s
    waiting = set(range(len(procs)))
    while waiting and time.monotonic() < deadline:
        for i in sorted(waiting):
            text = (logs / f"w{i}.log").read_text(errors="replace")
            if f"worker w{i}:" in text and joined in text:
                waiting.discard(i)
            elif procs[i].poll() is not None:
                raise PerfError(f"worker w{i} exited {procs[i].returncode}: {text[-2000:]}")
        time.sleep(0.2)
    if waiting:
        raise PerfError(f"workers {sorted(waiting)} not ready within {timeout_s:.0f} s")


def drive(
    config: JobConfig,
    job: Path,
    events: Sequence[dict[str, Any]],
    *,
    workers: int,
    rate: float,
    url: str | None = None,
    report: Callable[[str], None] | None = print,
    timeout_s: float = 600.0,
    logs: Path,
) -> StreamRun:
    """Replay ``events`` at ``rate``/s to ``workers`` fresh workers; measure until all scored."""
    procs = start_workers(job, workers, logs, url=url)
    outputs = None
    try:
        kafka = isinstance(config.bus, KafkaBus)
        _ready(procs, logs, 300, "kafka: partitions" if kafka else "")
        outputs = watch(config)
        producer = threading.Thread(target=replay, args=(config, events), kwargs={"rate": rate})
        start = time.time()
        producer.start()
        latencies, max_lag, done_at = _watch(outputs, len(events), start, report, timeout_s)
        producer.join()
        dead = outputs.dead()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = tuple(p.wait(60) for p in procs)
        if outputs is not None:
            outputs.close()
    scored = len(latencies)
    seconds = max(done_at - start, 1e-9)
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return StreamRun(
        workers=workers,
        rate=rate,
        events=len(events),
        scored=scored,
        dead=dead,
        seconds=seconds,
        events_per_s=scored / seconds,
        p50_ms=float(np.percentile(lat, 50)),
        p99_ms=float(np.percentile(lat, 99)),
        max_lag=max_lag,
        exit_codes=codes,
    )


def _watch(
    outputs: Watch,
    n: int,
    start: float,
    report: Callable[[str], None] | None,
    timeout_s: float,
) -> tuple[list[float], int, float]:
    """Read predictions as they are written; print progress every 2 s until ``n`` are handled
    (an event id seen twice counts once)."""
    latencies: list[float] = []
    ids: set[str] = set()
    max_lag, shown, seen_at, checked, lag, dead = 0, time.monotonic(), 0, 0.0, 0, 0
    done_at = time.time()
    while True:
        for rec in outputs.poll():
            if rec["id"] in ids:
                continue
            ids.add(rec["id"])
            if rec.get("event_time") is not None:
                latencies.append(rec["scored_at"] - rec["event_time"])
            done_at = max(done_at, rec["scored_at"])
        if time.monotonic() - checked >= 1.0 or len(ids) + dead >= n:
            lag, dead, checked = outputs.lag(), outputs.dead(), time.monotonic()
            max_lag = max(max_lag, lag)
        handled = len(ids) + dead
        if report and (time.monotonic() - shown >= 2 or handled >= n):
            window = np.array(latencies[seen_at:]) * 1000
            rate = (len(latencies) - seen_at) / max(time.monotonic() - shown, 1e-9)
            p50, p99 = np.percentile(window, [50, 99]) if len(window) else (np.nan, np.nan)
            report(
                f"{time.time() - start:6.1f} s  scored {len(latencies):>7,}/{n:,}  "
                f"{rate:7.0f} events/s  lag {lag:>6,}  "
                f"e2e p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
            )
            shown, seen_at = time.monotonic(), len(latencies)
        if handled >= n:
            return latencies, max_lag, done_at
        if time.time() - start > timeout_s:
            raise PerfError(f"only {handled:,} of {n:,} events handled after {timeout_s:.0f} s")
