"""`tritonpipe plan`: from a replica's queueing model, a target load, a p99 SLO, a headroom
policy and a price, the replicas needed, their utilisation, the cost, and the p99 predicted at
the target; and the check of that prediction against one replica under Poisson load."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tritonpipe.errors import PerfError, SpecError
from tritonpipe.perf.generator import ProfileOptions, Profiler
from tritonpipe.perf.queueing import QueueModel
from tritonpipe.perf.results_csv import ResultRow, read_csv


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
    slo_p99_ms: float
    headroom: float
    peak_qps: float
    mean_qps: float
    capacity_per_replica: float  # the model's saturation rate
    max_qps_per_replica: float  # the largest rate meeting the SLO
    planned_qps_per_replica: float  # at the peak, spread over the replicas
    utilisation: float  # at the peak
    predicted_p99_ms: float  # at the peak
    cost_per_hour: float
    cost_per_million: float  # fixed fleet, at the mean load
    autoscaled: list[int] = field(default_factory=list)  # replicas per period of a curve
    autoscaled_cost_per_million: float | None = None
    model: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(
    model: QueueModel, target: Target, slo_p99_ms: float, headroom: float, pricing: Pricing
) -> Plan:
    """Replicas run at most (1 - headroom) of the largest rate that meets the SLO."""
    if not 0 <= headroom < 1:
        raise SpecError(f"--headroom {headroom:g}: a fraction in [0, 1)")
    usable = model.max_rate(slo_p99_ms / 1000) * (1 - headroom)
    if usable <= 0:
        raise PerfError("the fitted model leaves no load per replica within the SLO")

    def need(qps: float) -> int:
        return max(1, math.ceil(qps / usable - 1e-9)) if qps > 0 else 0

    replicas = need(target.peak)
    per = target.peak / replicas
    cost = replicas * pricing.replica_hour
    autoscaled = [need(q) for q in target.curve]
    auto_cost = None
    if autoscaled:
        served = sum(target.curve) * 3600
        auto_cost = sum(autoscaled) * pricing.replica_hour / served * 1e6
    return Plan(
        replicas=replicas,
        slo_p99_ms=slo_p99_ms,
        headroom=headroom,
        peak_qps=target.peak,
        mean_qps=target.mean,
        capacity_per_replica=model.capacity,
        max_qps_per_replica=usable / (1 - headroom),
        planned_qps_per_replica=per,
        utilisation=per / model.capacity,
        predicted_p99_ms=model.p99(per) * 1000,
        cost_per_hour=cost,
        cost_per_million=cost / (target.mean * 3600) * 1e6,
        autoscaled=autoscaled,
        autoscaled_cost_per_million=auto_cost,
        model={
            "base_p99_ms": model.base_s * 1000,
            "service_ms": model.service_s * 1000,
            "cs2": model.cs2,
            "fit_error": model.fit_error,
        },
    )


def table(plan: Plan, pricing: Pricing) -> str:
    unit = f"per {pricing.unit}-hour" + (
        f" x {pricing.gpus_per_replica} GPUs" if pricing.unit == "gpu" else ""
    )
    lines = [
        f"replicas                 {plan.replicas}",
        f"peak load                {plan.peak_qps:g} infer/s ({plan.mean_qps:.0f} mean)",
        f"per replica at the peak  {plan.planned_qps_per_replica:.0f} infer/s, "
        f"utilisation {plan.utilisation:.0%}",
        f"per replica, most        {plan.max_qps_per_replica:.0f} infer/s at p99 <= "
        f"{plan.slo_p99_ms:g} ms (capacity {plan.capacity_per_replica:.0f}), "
        f"headroom {plan.headroom:.0%}",
        f"predicted p99 at peak    {plan.predicted_p99_ms:.2f} ms",
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
        f"queueing model           p99 at no load {m['base_p99_ms']:.2f} ms, service "
        f"{m['service_ms']:.3f} ms, Cs2 {m['cs2']:.2f}, fit error {m['fit_error']:.1%}"
    )
    return "\n".join(lines)


def rate_points(csv: Path) -> list[ResultRow]:
    mode, rows = read_csv(csv)
    if mode != "request_rate":
        raise PerfError(
            f"{csv}: holds concurrency points; plan needs request-rate points: run perf profile "
            "--request-rate-range START:END:STEP --request-distribution poisson -f FILE"
        )
    return rows


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
) -> list[ResultRow]:
    """Poisson arrivals at each rate on one replica, the generator's way."""
    options = ProfileOptions(
        model=model,
        url=url,
        protocol=protocol,
        mode="request_rate",
        loads=tuple(round(r, 1) for r in rates),
        distribution="poisson",
        measurement_interval_ms=window_ms,
        max_trials=6,
        stability_percentage=25.0,
        percentile=99,
        input_data=input_data,
    )
    return [r.row for r in asyncio.run(Profiler(options).run(progress))]


def validate(
    plan: Plan, model: QueueModel, measure: Callable[[list[float]], list[ResultRow]]
) -> list[dict[str, float]]:
    """One replica at 50%, 70% and 90% of its planned load: predicted against measured p99."""
    fractions = (0.5, 0.7, 0.9)
    rates = [plan.planned_qps_per_replica * f for f in fractions]
    rows = measure(rates)
    out = []
    for fraction, rate, row in zip(fractions, rates, rows, strict=True):
        predicted = model.p99(rate) * 1000
        measured = row.p99_us / 1000
        out.append(
            {
                "fraction": fraction,
                "rate": rate,
                "measured_throughput": row.throughput,
                "predicted_p99_ms": predicted,
                "measured_p99_ms": measured,
                "error": (predicted - measured) / measured,
            }
        )
    return out


def validation_table(checks: list[dict[str, float]]) -> str:
    lines = ["load  rate/s  predicted p99  measured p99  error"]
    for c in checks:
        lines.append(
            f"{c['fraction']:>4.0%} {c['rate']:>7.0f} {c['predicted_p99_ms']:>11.2f} ms "
            f"{c['measured_p99_ms']:>9.2f} ms {c['error']:>+7.1%}"
        )
    return "\n".join(lines)
