"""A queueing model of one replica's p99 latency against its Poisson request rate, fitted to
measured request-rate points.

The replica is treated as one M/G/1 server with an effective service time ``S`` (1/S is its
capacity, whatever instances and batching give it) and squared coefficient of variation Cs².
Pollaczek-Khinchine gives the mean wait Wq = rho * S * (1 + Cs²) / (2 (1 - rho)) at load
rho = rate * S; the wait of a request that waits is close to exponential with mean Wq / rho,
and a request waits with probability rho, so the wait's 99th percentile is
(Wq / rho) * ln(100 rho) (0 when rho <= 1%). For M/M/1 (Cs² = 1) this is exact. The p99
latency adds ``base``, the p99 at no load (network, batching delay, compute):

    p99(rate) = base + k * S / (1 - rho) * ln(100 rho),   k = (1 + Cs²) / 2

For a given S the model is linear in (base, k), so the fit scans S and solves the rest by
least squares on relative errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonpipe.errors import PerfError


def wait_p99(rate: float, service_s: float, k: float = 1.0) -> float:
    """The 99th percentile of the queueing wait (seconds); inf at or past saturation."""
    rho = rate * service_s
    if rho >= 1:
        return math.inf
    if rho <= 0.01:
        return 0.0
    return k * service_s / (1 - rho) * math.log(100 * rho)


@dataclass(frozen=True)
class QueueModel:
    base_s: float  # p99 at no load
    service_s: float  # effective service time: 1 / capacity
    k: float  # (1 + Cs²) / 2
    fit_error: float = 0.0  # mean absolute relative error over the fitted points

    @property
    def capacity(self) -> float:
        return 1 / self.service_s

    @property
    def cs2(self) -> float:
        return max(0.0, 2 * self.k - 1)

    def p99(self, rate: float) -> float:
        """Predicted p99 latency (seconds) at ``rate`` requests/s."""
        return self.base_s + wait_p99(rate, self.service_s, self.k)

    def max_rate(self, slo_s: float) -> float:
        """The largest rate whose predicted p99 is within ``slo_s``."""
        if slo_s < self.base_s:
            raise PerfError(
                f"the SLO p99 {slo_s * 1000:g} ms is below the p99 the model predicts with no "
                f"load, {self.base_s * 1000:.2f} ms: no replica count meets it"
            )
        low, high = 0.0, self.capacity
        for _ in range(100):
            mid = (low + high) / 2
            low, high = (mid, high) if self.p99(mid) <= slo_s else (low, mid)
        return low


def _weighted(
    x: np.ndarray[Any, Any], w: np.ndarray[Any, Any], c: np.ndarray[Any, Any]
) -> tuple[float, float]:
    """(base, k) >= 0 minimising sum(c² (base w + k x w - 1)²): relative errors (w = 1/y),
    each weighted by c."""
    a = np.stack([w * c, x * w * c], axis=1)
    (base, k), *_ = np.linalg.lstsq(a, c, rcond=None)
    if base >= 0 and k >= 0:
        return float(base), float(k)
    u, v = w * c, x * w * c  # clamp one at zero, refit the other
    fits = [(float(np.sum(u * c) / np.sum(u**2)), 0.0)]
    if float(np.sum(v**2)) > 0:
        fits.append((0.0, float(np.sum(v * c) / np.sum(v**2))))
    return min(fits, key=lambda f: float(np.sum((f[0] * u + f[1] * v - c) ** 2)))


def _solve(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[float, float, float]:
    """(base, k, error) of y ~ base + k x on relative errors, base, k >= 0. Iteratively
    reweighted towards least absolute errors: one p99 on a shared machine can be far off, and
    squares would let it pull the whole curve. The error is the mean absolute relative one."""
    w = 1 / y
    c = np.ones_like(y)
    for _ in range(20):
        base, k = _weighted(x, w, c)
        c = 1 / np.sqrt(np.maximum(np.abs(base * w + k * x * w - 1), 0.01))
    error = float(np.mean(np.abs(base * w + k * x * w - 1)))
    return base, k, error


def fit(
    rates: Sequence[float], p99s_s: Sequence[float], capacity: float | None = None
) -> QueueModel:
    """Fit the model to measured (request rate, p99 seconds) points of one replica.
    ``capacity`` (requests/s, e.g. the saturated throughput a sweep measured) fixes S = 1/capacity
    instead of fitting it: points far from saturation say little about it."""
    if len(rates) != len(p99s_s) or len(rates) < 3:
        raise PerfError(
            f"the queueing model needs at least 3 request-rate points, got {len(rates)}: run "
            "perf profile --request-rate-range with 3 or more rates"
        )
    r = np.asarray(rates, dtype=float)
    y = np.asarray(p99s_s, dtype=float)
    if np.any(r <= 0) or np.any(y <= 0):
        raise PerfError("request rates and p99 latencies must all be > 0")
    top = float(r.max())
    best: QueueModel | None = None
    # Unless given, S ranges from 1/50 of the largest rate's period to just under saturation
    # at that rate.
    if capacity is not None and capacity <= top:
        raise PerfError(f"capacity {capacity:g}/s is not above the largest measured rate {top:g}/s")
    services = (
        np.array([1 / capacity])
        if capacity is not None
        else np.geomspace(1 / (50 * top), 0.999 / top, 600)
    )
    for service in services:
        x = np.array([wait_p99(v, float(service)) for v in r])
        base, k, error = _solve(x, y)
        if best is None or error < best.fit_error:
            best = QueueModel(base, float(service), k, error)
    assert best is not None
    return best
