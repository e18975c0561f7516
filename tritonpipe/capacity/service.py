"""A model's service profile, measured on one replica: the execution time per batch size (from
Triton's statistics per batch size, as the dynamic batcher forms batches of one-row requests at
rising concurrency, one instance, no queue delay) and the client/network overhead per request
(each latency less the server's time, at each load: the client's share grows with its rate).
It is measured in repeated windows, so a plan can say how much its prediction moves with the
measurement, and refuse when the windows disagree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tritonpipe.capacity.simulate import Config
from tritonpipe.errors import PerfError

# Windows that disagree by more than this (max - min over median) are repeated, then refused.
STABILITY = 0.2
# ... unless they disagree by less than this share of the SLO in absolute terms: 0.2 ms on a
# 0.6 ms latency is 33%, and 1% of a 20 ms SLO. The plan's interval then spans the spread (each
# window alone and the envelopes of all of them, Profile.envelopes), so it is shown, not hidden.
SLO_FLOOR = 0.025
# A straight line (A + B x rows) off a measured batch size by more than this is a warning.
FIT_WARNING = 0.1
OVERHEAD_SAMPLES = 2000  # kept per window


@dataclass(frozen=True)
class Window:
    """One repeat: mean execution seconds per batch size, and overhead samples (seconds)."""

    service_s: dict[int, float]
    overhead_s: tuple[float, ...]  # at the lightest load
    # (throughput, overhead samples) per measured load: the client's share grows with its rate
    by_load: tuple[tuple[float, tuple[float, ...]], ...] = ()
    turnaround_s: float = 0.0  # an instance's time between executions at saturation
    # Requests/s end to end at the highest concurrency, where that level left its one instance
    # waiting for requests (the CPU outside the model's compute is the bottleneck); 0: none.
    ceiling_per_s: float = 0.0

    def overhead_at(self, rate: float) -> tuple[float, ...]:
        """The overheads measured at the largest load not above ``rate`` (the lightest below)."""
        chosen = self.overhead_s
        for throughput, samples in sorted(self.by_load):
            if throughput <= rate:
                chosen = samples
        return chosen

    def service(self, rows: int, rng: np.random.Generator | None = None) -> float:
        """Seconds one execution of ``rows`` takes: measured, or interpolated between the
        batch sizes measured (extrapolated past the largest with the slope of a straight line
        through all of them, never below 0: two noisy neighbours can slope down)."""
        sizes = sorted(self.service_s)
        times = [self.service_s[b] for b in sizes]
        if rows > sizes[-1] and len(sizes) > 1:
            slope = max(0.0, float(np.polyfit(sizes, times, 1)[0]))
            return times[-1] + slope * (rows - sizes[-1])
        return float(np.interp(rows, sizes, times))


def pooled_ceiling(windows: Sequence[Window]) -> float:
    """The windows' median ceiling; none (0) unless every window found one."""
    ceilings = [w.ceiling_per_s for w in windows]
    return 0.0 if min(ceilings) == 0 else float(np.median(ceilings))


def spread(values: Sequence[float]) -> float:
    """(max - min) / median."""
    middle = float(np.median(values))
    return (max(values) - min(values)) / middle if middle > 0 else float("inf")


@dataclass(frozen=True)
class Profile:
    """Repeated windows of one model's service profile, and the config it was served with."""

    windows: tuple[Window, ...]
    config: Config
    model: str = ""
    warnings: tuple[str, ...] = field(default=())
    # The share of an execution that holds the device, measured with the served instances
    # saturating it (1: all of it, or not measured).
    device_share: float = 1.0
    # Requests/s the served config carried end to end under Poisson arrivals offered at its
    # simulated saturation, where that fell short of it (the CPU outside the model's compute is
    # the bottleneck); 0: not measured, or not short.
    ceiling_per_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.windows:
            raise PerfError("a service profile needs at least one window")
        for w in self.windows:
            if not w.service_s or min(w.service_s.values()) <= 0 or not w.overhead_s:
                raise PerfError(
                    "a service profile needs execution times > 0 and overhead samples in "
                    "every window: a latency of 0 cannot be measured"
                )

    @property
    def sizes(self) -> list[int]:
        return sorted(self.windows[0].service_s)

    def pooled(self) -> Window:
        """The windows together: median time per batch size, every overhead sample."""
        service = {b: float(np.median([w.service_s[b] for w in self.windows])) for b in self.sizes}
        overhead = tuple(v for w in self.windows for v in w.overhead_s)
        # The windows measure the same loads in the same order: pool each load's samples.
        levels = min(len(w.by_load) for w in self.windows)
        by_load = tuple(
            (
                float(np.median([w.by_load[i][0] for w in self.windows])),
                tuple(v for w in self.windows for v in w.by_load[i][1]),
            )
            for i in range(levels)
        )
        gap = float(np.median([w.turnaround_s for w in self.windows]))
        return Window(service, overhead, by_load, gap, pooled_ceiling(self.windows))

    def fit(self) -> tuple[float, float, float]:
        """(A, B, error) of a straight line A + B x rows (seconds) through the pooled times;
        error: the largest relative miss at a measured batch size."""
        pooled = self.pooled().service_s
        sizes = np.array(self.sizes, dtype=float)
        times = np.array([pooled[b] for b in self.sizes])
        if len(sizes) == 1:
            return float(times[0]), 0.0, 0.0
        slope, intercept = np.polyfit(sizes, times, 1)
        error = float(np.max(np.abs(intercept + slope * sizes - times) / times))
        return float(intercept), float(slope), error

    def _compared(self) -> dict[str, list[float]]:
        """What the windows must agree on: the time per batch size, and the median latency at
        batch size 1 (the overhead counts against the latency it is part of: a 0.2 ms overhead
        doubling matters little beside a 10 ms execution)."""
        out = {f"batch {b}": [w.service_s[b] for w in self.windows] for b in self.sizes}
        first = self.sizes[0]
        out["latency at batch 1"] = [
            w.service_s[first] + float(np.median(w.overhead_s)) for w in self.windows
        ]
        return out

    def instability(self) -> dict[str, float]:
        """The windows' relative spread (max - min over median) of each compared value."""
        return {name: spread(values) for name, values in self._compared().items()}

    def unstable(
        self, stability: float = STABILITY, slo_s: float | None = None
    ) -> tuple[list[tuple[str, float]], list[tuple[str, float, float]]]:
        """(refused, tolerated): the compared values whose windows differ by more than
        ``stability`` (relative) and by more than SLO_FLOOR of ``slo_s`` (absolute seconds),
        as (name, relative); and those over ``stability`` but under the floor, as (name,
        relative, absolute seconds). Without an SLO there is no floor."""
        floor = SLO_FLOOR * slo_s if slo_s is not None else 0.0
        refused: list[tuple[str, float]] = []
        tolerated: list[tuple[str, float, float]] = []
        for name, values in self._compared().items():
            relative = spread(values)
            if relative <= stability:
                continue
            absolute = max(values) - min(values)
            if slo_s is not None and absolute <= floor:
                tolerated.append((name, relative, absolute))
            else:
                refused.append((name, relative))
        return sorted(refused, key=lambda nr: -nr[1]), tolerated

    def envelopes(self) -> tuple[Window, Window]:
        """(fastest, slowest): every batch size's and the overhead's best and worst window
        together, so an interval also covers windows that mix the measured extremes."""
        by_median = sorted(self.windows, key=lambda w: float(np.median(w.overhead_s)))
        out = []
        for pick, overheads in ((min, by_median[0]), (max, by_median[-1])):
            service = {b: pick(w.service_s[b] for w in self.windows) for b in self.sizes}
            turn = pick(w.turnaround_s for w in self.windows)
            # The fastest envelope has the highest ceiling; one window without one has none.
            ceilings = [w.ceiling_per_s for w in self.windows]
            ceiling = 0.0 if min(ceilings) == 0 else (max if pick is min else min)(ceilings)
            out.append(Window(service, overheads.overhead_s, overheads.by_load, turn, ceiling))
        return out[0], out[1]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "config": self.config.__dict__,
            "warnings": list(self.warnings),
            "device_share": self.device_share,
            "ceiling_per_s": self.ceiling_per_s,
            "windows": [
                {
                    "service_s": {str(b): t for b, t in w.service_s.items()},
                    "overhead_s": w.overhead_s,
                    "by_load": [[t, list(o)] for t, o in w.by_load],
                    "turnaround_s": w.turnaround_s,
                    "ceiling_per_s": w.ceiling_per_s,
                }
                for w in self.windows
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        try:
            windows = tuple(
                Window(
                    {int(b): float(t) for b, t in w["service_s"].items()},
                    tuple(w["overhead_s"]),
                    tuple((float(t), tuple(o)) for t, o in w.get("by_load", [])),
                    float(w.get("turnaround_s", 0.0)),
                    float(w.get("ceiling_per_s", 0.0)),
                )
                for w in data["windows"]
            )
            knobs = dict(data["config"])
            knobs["preferred_batch_sizes"] = tuple(knobs.get("preferred_batch_sizes", ()))
            return cls(
                windows,
                Config(**knobs),
                data.get("model", ""),
                tuple(data["warnings"]),
                float(data.get("device_share", 1.0)),
                float(data.get("ceiling_per_s", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PerfError(f"not a service profile ({type(exc).__name__}: {exc})") from None


def served_config(config: dict[str, Any], devices: int = 1) -> Config:
    """The knobs of a model config as Triton reports it (JSON form)."""
    groups = config.get("instance_group") or [{}]
    batching = config.get("dynamic_batching") or {}
    largest = max(1, int(config.get("max_batch_size", 0)))
    preferred = tuple(
        int(p) for p in batching.get("preferred_batch_size") or () if int(p) < largest
    )
    return Config(
        count=int(groups[0].get("count", 1)),
        max_batch_size=largest,
        max_queue_delay_us=int(batching.get("max_queue_delay_microseconds", 0)),
        preferred_batch_sizes=preferred,
        devices=devices,
    )


def batch_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, ... up to the largest batch, which is always included."""
    sizes, b = [], 1
    while b < max_batch_size:
        sizes.append(b)
        b *= 2
    return [*sizes, max(1, max_batch_size)]


MIN_EXECUTIONS = 20  # a batch size's mean needs at least this many executions


def batch_times(statistics: dict[str, Any], model: str) -> dict[int, tuple[int, int]]:
    """Per batch size, (executions, nanoseconds of compute input + infer + output), summed
    over the model's versions, from Triton's statistics answer."""
    out: dict[int, tuple[int, int]] = {}
    for entry in statistics.get("model_stats", []):
        if entry.get("name") != model:
            continue
        for batch in entry.get("batch_stats", []):
            size = int(batch["batch_size"])
            count = int(batch.get("compute_infer", {}).get("count", 0))
            ns = sum(
                int(batch.get(stage, {}).get("ns", 0))
                for stage in ("compute_input", "compute_infer", "compute_output")
            )
            done, total = out.get(size, (0, 0))
            out[size] = (done + count, total + ns)
    return out


@dataclass(frozen=True)
class Level:
    """One concurrency level of a window: its batches and its requests' overhead."""

    executions: dict[int, tuple[int, int]]  # batch size -> (executions, ns), this level's
    throughput: float
    overhead_s: tuple[float, ...]  # each latency less the mean server time (queue + compute)
    # Over the measured windows alone (the executions above include the ramp up and down):
    # executions a second and rows per execution; 0 when not known.
    execution_rate: float = 0.0
    rows_per_execution: float = 0.0

    def cycle(self) -> tuple[float, float] | None:
        """(seconds per execution, rows per execution) in the measured windows."""
        if self.execution_rate > 0 and self.rows_per_execution > 0:
            return 1 / self.execution_rate, self.rows_per_execution
        executions = sum(done for done, _ in self.executions.values())
        if executions == 0 or self.throughput <= 0:
            return None
        rows = sum(b * done for b, (done, _) in self.executions.items()) / executions
        return rows / self.throughput, rows


def window_of(levels: Sequence[Level], max_batch_size: int) -> Window:
    """Execution time per batch size over the levels (sizes seen fewer than MIN_EXECUTIONS
    times are interpolated), and the overheads: the first (lightest) level's samples, shifted to
    each level's mean, keyed by that level's throughput."""
    count: dict[int, int] = {}
    ns: dict[int, int] = {}
    for level in levels:
        for size, (done, total) in level.executions.items():
            count[size] = count.get(size, 0) + done
            ns[size] = ns.get(size, 0) + total
    seen = sorted(b for b in count if count[b] >= MIN_EXECUTIONS)
    if not seen:
        raise PerfError(
            "the server's statistics show no executions per batch size: is the model one Triton "
            "runs itself (not an ensemble), with dynamic batching?"
        )
    measured = Window({b: ns[b] / count[b] / 1e9 for b in seen}, (1.0,))
    service = {b: measured.service(b) for b in batch_sizes(max_batch_size)}
    first = np.asarray(levels[0].overhead_s)
    step = max(1, len(first) // OVERHEAD_SAMPLES)
    shape = first[::step] - float(np.mean(first))
    by_load = tuple(
        (
            level.throughput,
            tuple(float(v) for v in np.maximum(shape + np.mean(level.overhead_s), 0)),
        )
        for level in levels
    )
    window = Window(service, tuple(float(v) for v in first[::step]), by_load)
    top = levels[-1]
    if starved(top, window):
        # The instance waited for requests: the gap between its executions is the CPU outside
        # the model's compute, which the ceiling models; it is not the instance's own time.
        return replace(window, ceiling_per_s=top.throughput)
    return replace(window, turnaround_s=turnaround(top, window))


STARVED = 0.7  # an instance busy less than this share of the highest level waited for requests


def starved(level: Level, service: Window) -> bool:
    """At the highest concurrency (twice the largest batch in flight) one instance should be
    executing nearly all the time; executing less than STARVED of it, it waited for requests
    that the client, the front end and the backend's per-request work could not deliver faster
    on this machine's CPUs."""
    cycle = level.cycle()
    if cycle is None or level.throughput <= 0:
        return False
    seconds, rows = cycle
    return service.service(max(1, round(rows))) / seconds < STARVED


def turnaround(level: Level, service: Window) -> float:
    """At a saturating level (one instance, always a batch waiting) what an execution cycle
    takes beyond the execution itself is time between executions."""
    cycle = level.cycle()
    if cycle is None:
        return 0.0
    seconds, rows = cycle
    return max(0.0, seconds - service.service(max(1, round(rows))))


def measure_profile(
    measure: Callable[[], Window],
    config: Config,
    model: str = "",
    repeats: int = 3,
    extra: int = 2,
    progress: Callable[[str], None] = lambda _: None,
    stability: float = STABILITY,
    slo_s: float | None = None,
) -> Profile:
    """``repeats`` windows (up to ``extra`` more while they disagree by more than
    ``stability`` and, given the SLO, by more than SLO_FLOOR of it); refused when the last
    ``repeats`` still disagree. A spread tolerated by the floor is a warning of the profile."""
    windows: list[Window] = []
    for attempt in range(repeats + extra):
        windows.append(measure())
        last = windows[-1]
        progress(
            f"  window {attempt + 1}: execution "
            + ", ".join(f"b={b} {t * 1000:.2f} ms" for b, t in last.service_s.items())
            + f"; overhead median {np.median(last.overhead_s) * 1000:.2f} ms"
            + f"; between executions {last.turnaround_s * 1000:.2f} ms"
            + (
                f"; the instance waited for requests: ceiling {last.ceiling_per_s:.0f}/s"
                if last.ceiling_per_s > 0
                else ""
            )
        )
        if len(windows) < repeats:
            continue
        profile = Profile(tuple(windows[-repeats:]), config, model)
        refused, tolerated = profile.unstable(stability, slo_s)
        if not refused:
            return _with_warnings(profile, tolerated, slo_s, stability)
    name, relative = refused[0]
    floor = f" and {SLO_FLOOR:.1%} of the SLO" if slo_s is not None else ""
    raise PerfError(
        f"the measurements are not stable: {name} varied {relative:.0%} across the last "
        f"{repeats} windows (limit {stability:.0%}{floor}) after {repeats + extra} windows; the "
        "machine is too busy to plan on. Rerun when it is quieter, or with longer --window-ms."
    )


def _with_warnings(
    profile: Profile,
    tolerated: Sequence[tuple[str, float, float]] = (),
    slo_s: float | None = None,
    stability: float = STABILITY,
) -> Profile:
    _, _, error = profile.fit()
    warnings = list(profile.warnings)
    if tolerated and slo_s is not None:
        spreads = ", ".join(f"{n} {r:.0%} ({a * 1000:.2f} ms)" for n, r, a in tolerated)
        warnings.append(
            f"the windows differ by more than {stability:.0%} in {spreads}, under "
            f"{SLO_FLOOR:.1%} of the {slo_s * 1000:g} ms SLO: accepted; the intervals span it"
        )
    if error > FIT_WARNING:
        warnings.append(
            f"the execution time is not a straight line in the batch size (A + B x rows misses "
            f"a measured size by {error:.0%}, over {FIT_WARNING:.0%}): the plan uses the "
            "measured times, interpolated; check them in the profile"
        )
    return replace(profile, warnings=tuple(warnings))


def device_share(profile: Profile, saturated: Level) -> float:
    """From a level where the served instances keep the shared device busy: each execution
    holds the device for 1 / (executions a second), against the execution time one instance
    alone takes for that batch size (the rest ran beside the other instances)."""
    cycle = saturated.cycle()
    if cycle is None:
        return 1.0
    seconds, rows = cycle
    alone = profile.pooled().service(max(1, round(rows)))
    return min(1.0, max(0.05, seconds * profile.config.devices / alone))
