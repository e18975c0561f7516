"""A discrete-event simulation of one Triton model under Poisson arrivals: the dynamic batcher
forming batches, the instances executing them, and the device they share.

The batcher forms a batch when an instance is free and requests are queued: at once when the
queue holds a preferred or the largest batch, or when there is no queue delay; otherwise when the
oldest request has waited ``max_queue_delay_us``; with preferred sizes, the largest one the queue
holds goes at once. The instance then waits for the device (one
execution at a time for ``devices=1``, as instances on one GPU share it, or the known-answer
device's lock) and holds it for the service time of that batch size. Each request's latency is
its queueing, batching and execution time plus one client/network overhead drawn from measured
ones. With one instance, batches of one and exponential or fixed service times this is M/M/1 or
M/D/1, whose exact answers the tests compare against."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from tritonpipe.errors import PerfError

Service = Callable[[int, np.random.Generator], float]  # batch size -> seconds
Item = TypeVar("Item")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The serving knobs the simulation models."""

    count: int = 1
    max_batch_size: int = 1
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    devices: int = 1  # executions that can run at once: 1 when the instances share one device

    def __post_init__(self) -> None:
        if min(self.count, self.max_batch_size, self.devices) < 1 or self.max_queue_delay_us < 0:
            raise PerfError("count, max_batch_size and devices >= 1, queue delay >= 0")

    def describe(self) -> str:
        text = f"n={self.count},b={self.max_batch_size},d={self.max_queue_delay_us}"
        preferred = "/".join(str(p) for p in self.preferred_batch_sizes)
        return text + (f",p={preferred}" if preferred else "")


@dataclass(frozen=True)
class Run:
    latencies_s: np.ndarray[Any, Any]  # per request, after the warm-up
    mean_batch: float
    utilisation: float  # of the device(s)

    def p99(self) -> float:
        return float(np.percentile(self.latencies_s, 99))


def batch_now(pending: int, config: Config, expired: bool) -> int:
    """How many queued requests the batcher sends now (0: wait for more)."""
    largest = config.max_batch_size
    if pending >= largest:
        return largest
    fits = [p for p in config.preferred_batch_sizes if p <= pending]
    if fits:
        return max(fits)
    if config.max_queue_delay_us == 0 or expired:
        return pending
    return 0


class Batcher(Generic[Item]):
    """The server side of both simulations (this one's Poisson arrivals, closed_loop's clients):
    the dynamic batcher forming batches from a queue when an instance is free, the instances,
    and the device slots they share."""

    def __init__(
        self,
        config: Config,
        service: Service,
        rng: np.random.Generator,
        turnaround_s: float = 0.0,
        device_share: float = 1.0,
    ):
        self.config = config
        self.service = service
        self.rng = rng
        self.turnaround_s = turnaround_s
        self.device_share = device_share
        self.delay = config.max_queue_delay_us / 1e6
        self.free_instances = config.count
        self.device_free = [0.0] * config.devices  # when each execution slot frees up (a heap)
        self.timeout_at = math.inf  # the pending queue-delay timeout (older ones are stale)
        self.busy = 0.0  # device seconds
        self.batches = 0

    def form(
        self, now: float, queue: deque[Item], arrived: Callable[[Item], float]
    ) -> tuple[list[tuple[list[Item], float]], float | None]:
        """Batches sent at ``now`` from ``queue`` (oldest first; ``arrived`` gives an item's
        arrival time), each with when its execution ends; and when a new queue-delay timeout
        falls due (None: none). The caller frees an instance ``turnaround_s`` after each end."""
        sent: list[tuple[list[Item], float]] = []
        timeout = None
        while self.free_instances and queue:
            oldest = arrived(queue[0])
            take = batch_now(len(queue), self.config, now >= oldest + self.delay - 1e-12)
            if take == 0:
                at = oldest + self.delay
                if at != self.timeout_at:
                    self.timeout_at = timeout = at
                break
            batch = [queue.popleft() for _ in range(take)]
            seconds = self.service(take, self.rng)
            host = seconds * (1 - self.device_share)
            start = max(now + host, heapq.heappop(self.device_free))
            end = start + seconds - host
            heapq.heappush(self.device_free, end)
            self.free_instances -= 1
            self.busy += seconds - host
            self.batches += 1
            sent.append((batch, end))
        return sent, timeout


def simulate(
    rate: float,
    service: Service,
    config: Config,
    overhead_s: Sequence[float] = (0.0,),
    requests: int = 20000,
    seed: int = 0,
    warmup: float = 0.05,
    turnaround_s: float = 0.0,
    device_share: float = 1.0,
    ceiling: float = 0.0,
) -> Run:
    """Latencies of ``requests`` Poisson arrivals at ``rate`` per second (the first ``warmup``
    share dropped). ``overhead_s`` are client/network times, drawn with replacement;
    ``turnaround_s`` is how long an instance stays unavailable after each execution (the
    backend's work between executes, off the device); ``device_share`` is the part of each
    execution that holds the device (the rest, the backend's own work before it, runs beside
    other instances' executions); ``ceiling`` (requests/s, 0: none) is the most the CPU
    outside the model's compute carries end to end (the client, the front end, the backend's
    per-request work): each request holds it for ``1 / ceiling`` in arrival order before it
    reaches the batcher (front_end), and waits for it when it is busy."""
    if rate <= 0 or requests < 100 or ceiling < 0:
        raise PerfError("simulate: rate > 0, ceiling >= 0 and at least 100 requests")
    rng = np.random.default_rng(seed)
    sent_at = np.cumsum(rng.exponential(1 / rate, requests))
    arrivals = front_end(sent_at, ceiling)  # when each request reaches the batcher's queue
    extra = rng.choice(np.asarray(overhead_s, dtype=float), requests)
    done = np.zeros(requests)
    queue: deque[int] = deque()
    server: Batcher[int] = Batcher(config, service, rng, turnaround_s, device_share)
    events: list[tuple[float, int, int]] = []  # (time, kind, data): 0 instance free, 1 timeout
    i = 0
    now = 0.0
    while i < requests or queue or events:
        next_arrival = arrivals[i] if i < requests else math.inf
        next_event = events[0][0] if events else math.inf
        if next_arrival <= next_event:
            now = float(next_arrival)
            queue.append(i)
            i += 1
        else:
            now, kind, _ = heapq.heappop(events)
            if kind == 0:
                server.free_instances += 1
            elif now < server.timeout_at:  # a stale timeout
                continue
        sent, timeout = server.form(now, queue, lambda r: float(arrivals[r]))
        for batch, end in sent:
            heapq.heappush(events, (end + turnaround_s, 0, 0))
            for r in batch:
                done[r] = end
        if timeout is not None:
            heapq.heappush(events, (timeout, 1, 0))
    keep = slice(int(requests * warmup), requests)
    # The overhead samples already hold each request's own time on the CPU: add the wait for it.
    cost = 1 / ceiling if ceiling > 0 else 0.0
    latencies = (done - sent_at - cost + extra)[keep]
    return Run(latencies, requests / max(server.batches, 1), server.busy / (now * config.devices))


def front_end(sent_at: np.ndarray[Any, Any], ceiling: float) -> np.ndarray[Any, Any]:
    """When each request (sent at ``sent_at``, in order) leaves a single first-come first-served
    server that holds every request ``1 / ceiling`` seconds: the CPU outside the model's compute
    as one more shared server. ``ceiling`` 0: no such server (the times unchanged)."""
    if ceiling <= 0:
        return sent_at
    cost = 1 / ceiling
    out = np.empty_like(sent_at)
    free = -math.inf
    for k, t in enumerate(sent_at.tolist()):
        free = max(free, t) + cost
        out[k] = free
    return out


def max_rate(p99_at: Callable[[float], float], slo_s: float, high: float, steps: int = 14) -> float:
    """The largest rate whose p99 is within ``slo_s``, by bisection below ``high``."""
    low = 0.0
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if p99_at(mid) <= slo_s else (low, mid)
    return low
