"""Predictions from a service profile by simulation: p99 at a rate, the largest rate within a
p99 SLO, and the best serving knobs, each with an interval: the range of the same prediction
from each measured window alone and from the windows' envelopes (every batch size's fastest
window together, and every one's slowest)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from tritonpipe.capacity.service import Profile, Window
from tritonpipe.capacity.simulate import Config, max_rate, simulate
from tritonpipe.errors import PerfError

REQUESTS = 20000  # simulated per rate


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.low * factor, self.high * factor)

    def text(self, fmt: str = "{:.2f}") -> str:
        return f"{fmt.format(self.value)} ({fmt.format(self.low)}-{fmt.format(self.high)})"


class Predictor:
    """Simulates ``config`` (default: the one profiled) with the profile's service times."""

    def __init__(self, profile: Profile, config: Config | None = None, requests: int = REQUESTS):
        self.profile = profile
        self.config = config or profile.config
        self.requests = requests
        if self.config.max_batch_size > max(profile.sizes):
            raise PerfError(
                f"max_batch_size {self.config.max_batch_size} is larger than the largest batch "
                f"size profiled ({max(profile.sizes)})"
            )
        self.pooled = profile.pooled()
        # The interval's bounds: each window alone, and the extremes of all of them together.
        self.bounds = (*profile.windows, *profile.envelopes())

    def saturation(self, window: Window | None = None) -> float:
        """Requests/s with every execution slot busy on full batches."""
        w = window or self.pooled
        b = self.config.max_batch_size
        slots = min(self.config.count, self.config.devices)
        per_instance = self.config.count * b / (w.service(b) + w.turnaround_s)
        device = min(slots * b / (w.service(b) * self.profile.device_share), per_instance)
        # The CPU outside the compute carries no more than its measured ceiling, whatever the
        # instances could execute.
        ceiling = self.ceiling(w)
        return min(device, ceiling) if ceiling > 0 else device

    def ceiling(self, window: Window) -> float:
        """Requests/s end to end (0: none): the lower of the window's (its one instance left
        waiting at the highest concurrency) and the profile's (a saturation fell short)."""
        found = [c for c in (window.ceiling_per_s, self.profile.ceiling_per_s) if c > 0]
        return min(found, default=0.0)

    def _p99(self, rate: float, window: Window) -> float:
        largest = self.config.max_batch_size
        times = [0.0, *(window.service(n) for n in range(1, largest + 1))]
        run = simulate(
            rate,
            lambda rows, _rng: times[rows],
            self.config,
            window.overhead_at(rate),
            self.requests,
            turnaround_s=window.turnaround_s,
            device_share=self.profile.device_share,
            ceiling=self.ceiling(window),
        )
        return run.p99()

    def p99(self, rate: float) -> Estimate:
        """Predicted p99 seconds at ``rate`` requests/s."""
        central = self._p99(rate, self.pooled)
        each = [self._p99(rate, w) for w in self.bounds]
        return Estimate(central, min([central, *each]), max([central, *each]))

    def base(self) -> Estimate:
        """p99 with (almost) no load: one request at a time."""
        return self.p99(self.saturation() * 0.002)

    def capacity(self, slo_s: float) -> Estimate:
        """The largest Poisson rate whose predicted p99 is within ``slo_s``."""
        base = self._p99(self.saturation() * 0.002, self.pooled)
        if base > slo_s:
            raise PerfError(
                f"the SLO p99 {slo_s * 1000:g} ms is below the p99 predicted with no load, "
                f"{base * 1000:.2f} ms (one execution plus the client/network overhead): no "
                "replica count meets it"
            )

        def top(window: Window) -> float:
            return max_rate(lambda r: self._p99(r, window), slo_s, self.saturation(window))

        central = top(self.pooled)
        each = [top(w) for w in self.bounds]
        return Estimate(central, min([central, *each]), max([central, *each]))

    def capacity_pooled(self, slo_s: float, steps: int = 10) -> float:
        """The SLO capacity from the pooled windows alone (no interval): for ranking configs."""
        if self._p99(self.saturation() * 0.002, self.pooled) > slo_s:
            raise PerfError("no load meets the SLO")
        return max_rate(lambda r: self._p99(r, self.pooled), slo_s, self.saturation(), steps)


def candidates(profile: Profile, counts: Iterable[int], delays_us: Iterable[int]) -> list[Config]:
    """Configs to compare: each count and queue delay with each profiled batch size."""
    base = profile.config
    out = []
    for count in counts:
        for size in profile.sizes:
            for delay in delays_us:
                preferred = tuple(p for p in base.preferred_batch_sizes if p <= size)
                out.append(
                    replace(
                        base,
                        count=count,
                        max_batch_size=size,
                        max_queue_delay_us=delay,
                        preferred_batch_sizes=preferred,
                    )
                )
    return out


def best_config(
    profile: Profile, configs: list[Config], slo_s: float
) -> list[tuple[Config, float]]:
    """Each config with its predicted SLO capacity (a shorter simulation), best first; configs
    that cannot meet the SLO at all are left out."""
    scored = []
    for config in configs:
        if config.max_batch_size > max(profile.sizes):
            continue
        try:
            rate = Predictor(profile, config, requests=6000).capacity_pooled(slo_s)
        except PerfError:
            continue
        scored.append((config, rate))
    return sorted(scored, key=lambda cr: -cr[1])
