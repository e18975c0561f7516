"""Concurrency mode in simulation: ``c`` clients, each sending its next request as soon as its
last one returns, the way the sweep measures a candidate (and perf_analyzer's concurrency mode
does). The server side is simulate.py's Batcher: the dynamic batcher, the instances and the
device they share. A request reaches the server one client/network overhead after its client's
previous response left it, and its latency is its time in the server plus that overhead.

The sweep scores a candidate by the best throughput whose p99 meets the SLO over rising
concurrency (sweep.measure_levels); ``slo_throughput`` scores a simulated candidate the same way,
so the guided search ranks by what it will measure, not by a Poisson rate it never sends."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tritonpipe.capacity.simulate import Batcher, Config, Service
from tritonpipe.errors import PerfError

ARRIVE, FREE, TIMEOUT = 0, 1, 2


@dataclass(frozen=True)
class Level:
    concurrency: int
    throughput: float  # requests/s after the warm-up
    p99_s: float


def closed_loop(
    concurrency: int,
    service: Service,
    config: Config,
    overhead_s: Sequence[float] = (0.0,),
    requests: int = 3000,
    seed: int = 0,
    warmup: float = 0.1,
    turnaround_s: float = 0.0,
    device_share: float = 1.0,
) -> Level:
    """Throughput and p99 of ``requests`` completions with ``concurrency`` requests in flight
    (the first ``warmup`` share dropped); the other arguments as simulate.simulate's."""
    if concurrency < 1 or requests < 100:
        raise PerfError("closed_loop: concurrency >= 1 and at least 100 requests")
    rng = np.random.default_rng(seed)
    # Every overhead drawn up front: one per request sent, the first ``concurrency`` included.
    extras = rng.choice(
        np.asarray(overhead_s, dtype=float), requests + concurrency + config.max_batch_size
    ).tolist()
    drawn = concurrency
    events: list[tuple[float, int, int]] = []  # (time, kind, sequence): a heap
    sequence = 0

    def push(at: float, kind: int) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(events, (at, kind, sequence))

    for k in range(concurrency):  # the clients start within the first overhead
        push(extras[k], ARRIVE)
    queue: deque[float] = deque()  # arrival times
    server: Batcher[float] = Batcher(config, service, rng, turnaround_s, device_share)
    latencies: list[float] = []
    finished_at: list[float] = []
    while len(latencies) < requests:  # the last batch may overshoot
        now, kind, _ = heapq.heappop(events)
        if kind == ARRIVE:
            queue.append(now)
        elif kind == FREE:
            server.free_instances += 1
        elif now < server.timeout_at:  # a stale timeout
            continue
        sent, timeout = server.form(now, queue, float)
        for batch, end in sent:
            push(end + turnaround_s, FREE)
            for arrived in batch:
                extra = extras[drawn]
                drawn += 1
                latencies.append(end - arrived + extra)
                finished_at.append(end + extra)
                push(end + extra, ARRIVE)  # the client's next request
        if timeout is not None:
            push(timeout, TIMEOUT)
    first = int(requests * warmup)
    ends = sorted(finished_at)
    span = max(ends[-1] - ends[first], 1e-9)
    kept = np.asarray(latencies[first:])
    return Level(concurrency, (len(ends) - first - 1) / span, float(np.percentile(kept, 99)))


def slo_throughput(
    at: Callable[[int], Level],
    slo_s: float,
    ladder: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    refine: int = 3,
) -> tuple[float, list[Level]]:
    """The sweep's score of a candidate: the best throughput over ``ladder`` whose p99 is
    within ``slo_s``, with the same stopping rule as the measurement (two levels in a row over
    the SLO, or two adding under 5%), then up to ``refine`` bisection steps between the
    largest concurrency that met the SLO and the next one that broke it. Returns the score
    and the levels visited."""
    levels: list[Level] = []
    flat = broken = 0
    for c in ladder:
        level = at(c)
        gain = level.throughput / max(v.throughput for v in levels) if levels else 2.0
        levels.append(level)
        flat = flat + 1 if gain < 1.05 else 0
        broken = broken + 1 if level.p99_s > slo_s else 0
        if broken >= 2 or flat >= 2:
            break
    for _ in range(refine):
        more = next_between({v.concurrency: v.p99_s <= slo_s for v in levels})
        if more is None:
            break
        levels.append(at(more))
    ok = [v.throughput for v in levels if v.p99_s <= slo_s]
    if not ok:  # below 0, closer to the SLO is better: the sweep's order (Measurement.score)
        return -min(v.p99_s for v in levels) * 1000, levels
    return max(ok), levels


def next_between(meets: dict[int, bool]) -> int | None:
    """The next concurrency to try, bisecting between the largest one that met the SLO and
    the smallest above it that broke it (None: adjacent, or nothing broke or met): the score
    of a candidate is then not stuck at a power of two below its real capacity."""
    low = max((c for c, ok in meets.items() if ok), default=0)
    high = min((c for c, ok in meets.items() if not ok and c > low), default=0)
    if not low or not high or high - low <= 1:
        return None
    return (low + high) // 2
