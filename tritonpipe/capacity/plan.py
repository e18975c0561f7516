"""`tritonpipe plan`: from a replica's service profile (simulated with Triton's batching), a
target load, a p99 SLO, a headroom policy and a price, the replicas needed, their utilisation,
the cost and the p99 predicted at the target, each with its interval; and the check of those
predictions against one replica under Poisson load."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.capacity.measure import poisson_level
from tritonpipe.capacity.predict import Estimate, Predictor, best_config, candidates
from tritonpipe.errors import PerfError, SpecError

# Validation: a prediction off the measured p99 by more than this is reported as a miss.
VALIDATION_TOLERANCE = 0.15


@dataclass(frozen=True, kw_only=True)
class Target:
    """The load to serve: a peak rate, or a curve of equal periods (e.g. 24 hours)."""

    qps: float | None = None
    curve: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if (self.qps is None) == (not self.curve):
            raise SpecError("give the target load as --qps or --daily-curve, one of them")
        if any(v < 0 for v in self.curve) or (self.qps is not None and self.qps <= 0):
            raise SpecError("target loads must be > 0 (a curve's periods >= 0)")
        if self.curve and max(self.curve) <= 0:
            raise SpecError("--daily-curve: every period is 0")

    @property
    def peak(self) -> float:
        return self.qps if self.qps is not None else max(self.curve)

    @property
    def mean(self) -> float:
        return self.qps if self.qps is not None else sum(self.curve) / len(self.curve)


@dataclass(frozen=True, kw_only=True)
class Pricing:
    """The price of one replica-hour: ``price`` per server-hour, or per GPU-hour times the
    GPUs a replica uses."""

    price: float
    unit: str = "server"  # or "gpu"
    gpus_per_replica: int = 1

    def __post_init__(self) -> None:
        if self.unit not in ("server", "gpu"):
            raise SpecError(f"--price-unit {self.unit!r}: server or gpu")
        if self.price <= 0 or self.gpus_per_replica < 1:
            raise SpecError("the price must be > 0 and --gpus-per-replica >= 1")

    @property
    def replica_hour(self) -> float:
        return self.price * (self.gpus_per_replica if self.unit == "gpu" else 1)


@dataclass(frozen=True, kw_only=True)
class Plan:
    replicas: int
    replicas_if_low: int  # if each replica carried only the low end of its SLO capacity (-1: none)
    slo_p99_ms: float
    headroom: float
    peak_qps: float
    mean_qps: float
    config: str  # the serving knobs simulated
    saturation_per_replica: float  # every execution slot busy on full batches
    max_qps_per_replica: Estimate  # the largest Poisson rate meeting the SLO
    planned_qps_per_replica: float  # at the peak, spread over the replicas
    utilisation: float  # at the peak, of the saturation
    predicted_p99_ms: Estimate  # at the peak
    base_p99_ms: Estimate  # with no load
    cost_per_hour: float
    cost_per_million: float  # fixed fleet, at the mean load
    autoscaled: list[int] = field(default_factory=list)  # replicas per period of a curve
    autoscaled_cost_per_million: float | None = None
    model: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    knobs: list[dict[str, Any]] = field(default_factory=list)  # other configs, best first

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(
    predictor: Predictor,
    target: Target,
    slo_p99_ms: float,
    headroom: float,
    pricing: Pricing,
    tune: bool = False,
) -> Plan:
    """Replicas run at most (1 - headroom) of the largest rate that meets the SLO."""
    if not 0 <= headroom < 1:
        raise SpecError(f"--headroom {headroom:g}: a fraction in [0, 1)")
    slo_s = slo_p99_ms / 1000
    capacity = predictor.capacity(slo_s)
    usable = capacity.value * (1 - headroom)
    if usable <= 0:
        raise PerfError("the simulation leaves no load per replica within the SLO")
    warnings = list(predictor.profile.warnings)
    if capacity.low <= 0:
        warnings.append(
            "one measured window alone (or the windows' slowest at every batch size) misses the "
            "SLO even at no load: the interval reaches 0, so the plan rests on the other "
            "windows; rerun when the machine is quieter"
        )

    def need(qps: float, per: float = usable) -> int:
        return max(1, math.ceil(qps / per - 1e-9)) if qps > 0 else 0

    replicas = need(target.peak)
    per = target.peak / replicas
    cost = replicas * pricing.replica_hour
    autoscaled = [need(q) for q in target.curve]
    auto_cost = None
    if autoscaled:
        served = sum(target.curve) * 3600
        auto_cost = sum(autoscaled) * pricing.replica_hour / served * 1e6
    a_s, b_s, fit_error = predictor.profile.fit()
    saturation = predictor.saturation()
    knobs = []
    if tune:
        ranked = best_config(predictor.profile, _tuning(predictor), slo_s)
        knobs = [{"config": c.describe(), "max_qps_per_replica": r} for c, r in ranked[:5]]
    return Plan(
        replicas=replicas,
        replicas_if_low=(
            need(target.peak, capacity.low * (1 - headroom)) if capacity.low > 0 else -1
        ),
        slo_p99_ms=slo_p99_ms,
        headroom=headroom,
        peak_qps=target.peak,
        mean_qps=target.mean,
        config=predictor.config.describe(),
        saturation_per_replica=saturation,
        max_qps_per_replica=capacity,
        planned_qps_per_replica=per,
        utilisation=per / saturation,
        predicted_p99_ms=predictor.p99(per).scaled(1000),
        base_p99_ms=predictor.base().scaled(1000),
        cost_per_hour=cost,
        cost_per_million=cost / (target.mean * 3600) * 1e6,
        autoscaled=autoscaled,
        autoscaled_cost_per_million=auto_cost,
        model={
            "a_ms": a_s * 1000,
            "b_ms": b_s * 1000,
            "fit_error": fit_error,
            "overhead_median_ms": float(np.median(predictor.pooled.overhead_s)) * 1000,
        },
        warnings=warnings,
        knobs=knobs,
    )


def _tuning(predictor: Predictor) -> list[Any]:
    served = predictor.config
    counts = sorted({1, 2, served.count})
    delays = sorted({0, 500, 2000, served.max_queue_delay_us})
    return candidates(predictor.profile, counts, delays)


def table(plan: Plan, pricing: Pricing) -> str:
    unit = f"per {pricing.unit}-hour" + (
        f" x {pricing.gpus_per_replica} GPUs" if pricing.unit == "gpu" else ""
    )
    cap = plan.max_qps_per_replica
    lines = [
        f"replicas                 {plan.replicas}"
        + (
            f" ({plan.replicas_if_low} at the low end of the interval)"
            if plan.replicas_if_low not in (plan.replicas, -1)
            else ""
        ),
        f"peak load                {plan.peak_qps:g} infer/s ({plan.mean_qps:.0f} mean)",
        f"per replica at the peak  {plan.planned_qps_per_replica:.0f} infer/s, "
        f"utilisation {plan.utilisation:.0%}",
        f"per replica, most        {cap.text('{:.0f}')} infer/s at p99 <= "
        f"{plan.slo_p99_ms:g} ms (saturation {plan.saturation_per_replica:.0f}), "
        f"headroom {plan.headroom:.0%}",
        f"predicted p99 at peak    {plan.predicted_p99_ms.text()} ms",
        f"cost                     {plan.cost_per_hour:.2f}/hour ({pricing.price:g} {unit}), "
        f"{plan.cost_per_million:.4f} per million predictions",
    ]
    if plan.autoscaled:
        lines.append(
            f"autoscaled per period    {plan.autoscaled} replicas, "
            f"{plan.autoscaled_cost_per_million:.4f} per million predictions"
        )
    m = plan.model
    lines.append(
        f"model                    {plan.config}; execution {m['a_ms']:.2f} + {m['b_ms']:.3f} ms "
        f"x rows (fit {m['fit_error']:.0%}), overhead {m['overhead_median_ms']:.2f} ms median, "
        f"p99 at no load {plan.base_p99_ms.text()} ms"
    )
    for knob in plan.knobs:
        lines.append(
            f"knobs                    {knob['config']}: {knob['max_qps_per_replica']:.0f} infer/s "
            "per replica within the SLO (simulated)"
        )
    lines.append("(values in brackets: the range of the same prediction from each measured window)")
    lines += [f"WARNING: {w}" for w in plan.warnings]
    return "\n".join(lines)


def read_curve(path: Path) -> tuple[float, ...]:
    """One load per line (or comma separated), e.g. 24 hourly values."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return tuple(float(v) for v in text.replace(",", "\n").split())
    except ValueError as exc:
        raise SpecError(f"{path}: expected one number per line ({exc})") from None


def measure_rates(
    model: str,
    url: str,
    protocol: str,
    rates: Sequence[float],
    window_ms: int,
    input_data: str = "random",
    progress: Callable[[str], None] = lambda _: None,
) -> list[tuple[float, float]]:
    """(throughput, p99 seconds) of Poisson arrivals at each rate on one replica: three windows
    each, long enough for POISSON_REQUESTS requests in all, the p99 over all their requests.
    A rate where one window's p99 is over STALL times the windows' median (a stall of the
    machine, not queueing: the other two windows saw the same rate) is measured once more, and
    the run whose windows agree better is kept."""
    out = []
    for rate in rates:
        level = poisson_level(model, url, protocol, rate, window_ms, input_data, progress=progress)
        if stall(level.window_p99_s) > STALL:
            progress(
                f"  {rate:.0f}/s: window p99s "
                + " / ".join(f"{p * 1000:.1f}" for p in level.window_p99_s)
                + " ms disagree: measured again"
            )
            again = poisson_level(
                model, url, protocol, rate, window_ms, input_data, progress=progress
            )
            level = min((level, again), key=lambda lv: stall(lv.window_p99_s))
        out.append((level.row.throughput, float(np.percentile(level.latencies_s, 99))))
    return out


STALL = 1.5  # a window's p99 over the windows' median by more than this: measured again


def stall(window_p99_s: Sequence[float]) -> float:
    """The highest window p99 over the windows' median (1: they agree; 1 with fewer than 2)."""
    if len(window_p99_s) < 2 or min(window_p99_s) <= 0:
        return 1.0
    return max(window_p99_s) / float(np.median(window_p99_s))


def validate(
    plan: Plan,
    predictor: Predictor,
    measure: Callable[[list[float]], list[tuple[float, float]]],
) -> list[dict[str, Any]]:
    """One replica at 50%, 70% and 90% of its SLO capacity: predicted against measured p99."""
    fractions = (0.5, 0.7, 0.9)
    rates = [plan.max_qps_per_replica.value * f for f in fractions]
    measured = measure(rates)
    out = []
    for fraction, rate, (throughput, p99_s) in zip(fractions, rates, measured, strict=True):
        predicted = predictor.p99(rate).scaled(1000)
        p99_ms = p99_s * 1000
        out.append(
            {
                "fraction": fraction,
                "rate": rate,
                "measured_throughput": throughput,
                "predicted_p99_ms": predicted.value,
                "predicted_low_ms": predicted.low,
                "predicted_high_ms": predicted.high,
                "measured_p99_ms": p99_ms,
                "error": (predicted.value - p99_ms) / p99_ms,
            }
        )
    return out


def validation_table(checks: list[dict[str, Any]]) -> str:
    lines = ["load  rate/s  predicted p99 (interval)   measured p99  error"]
    misses = []
    for c in checks:
        lines.append(
            f"{c['fraction']:>4.0%} {c['rate']:>7.0f} {c['predicted_p99_ms']:>9.2f} ms "
            f"({c['predicted_low_ms']:.1f}-{c['predicted_high_ms']:.1f}) "
            f"{c['measured_p99_ms']:>9.2f} ms {c['error']:>+7.1%}"
        )
        if abs(c["error"]) > VALIDATION_TOLERANCE:
            misses.append(f"{c['fraction']:.0%}")
    if misses:
        lines.append(
            f"WARNING: the prediction missed the measured p99 by more than "
            f"{VALIDATION_TOLERANCE:.0%} at {', '.join(misses)} of the SLO capacity: do not trust "
            "this plan without a rerun on a quieter machine"
        )
    return "\n".join(lines)
