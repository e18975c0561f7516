"""The `plan` command's steps: request-rate points (a CSV, or measured on one replica serving
a sweep's best config), the fitted queueing model, the plan, its report, and its validation."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonpipe.errors import PerfError, SpecError
from tritonpipe.perf import plan as planning
from tritonpipe.perf.queueing import fit
from tritonpipe.perf.results_csv import ResultRow, write_csv

# Poisson rates measured for the fit, as fractions of the replica's saturated throughput.
FIT_FRACTIONS = (0.2, 0.4, 0.6, 0.75, 0.85, 0.92)


@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    qps: float | None
    daily_curve: Path | None
    slo_p99_ms: float
    headroom: float
    price: float
    price_unit: str
    gpus_per_replica: int
    profile: Path | None
    source: Path | None
    model: str | None
    sweep: Path | None
    validate: bool
    protocol: str = "grpc"
    window_ms: int = 2000
    input_data: str = "random"
    report: Path | None = None


@dataclass
class _Replica:
    """One replica being measured: the generator's address and protocol."""

    model: str
    url: str
    protocol: str
    window_ms: int
    input_data: str
    progress: Callable[[str], None]

    def rates(self, rates: list[float]) -> list[ResultRow]:
        return planning.measure_rates(
            self.model,
            self.url,
            self.protocol,
            rates,
            self.window_ms,
            self.input_data,
            self.progress,
        )

    def saturation(self) -> float:
        """The replica's throughput at high concurrency."""
        from tritonpipe.perf.sweep import MeasureOptions, Objective, measure_levels

        options = MeasureOptions(
            target=self.model,
            url=self.url,
            protocol=self.protocol,
            window_ms=self.window_ms,
            input_data=self.input_data,
        )
        rows = measure_levels(options, Objective(slo_p99_ms=1e9), self.progress)
        return max(r.throughput for r in rows)


def _best_settings(results: Path, slo_p99_ms: float) -> dict[str, dict[str, int]]:
    from tritonpipe.perf.sweep import Measurement, Objective
    from tritonpipe.perf.sweep_report import no_winner, ranked

    try:
        lines = results.read_text().splitlines()[1:]
    except OSError as exc:
        raise PerfError(f"{results}: cannot read ({exc.strerror})") from None
    done = [Measurement.from_json(json.loads(line)) for line in lines if line.strip()]
    objective = Objective(slo_p99_ms=slo_p99_ms)
    if not done:
        raise PerfError(f"{results}: no measured configs")
    best = ranked(done, objective)[0]
    if best.best(objective) is None:
        raise no_winner(done, objective)
    return best.settings


@contextlib.contextmanager
def _replica(request: PlanRequest, progress: Callable[[str], None]) -> Iterator[_Replica]:
    from tritonpipe.perf.candidates import ServerConfigs, describe
    from tritonpipe.perf.session import serving

    if request.source is None or request.model is None:
        raise SpecError(
            "measuring needs --source (spec or repository) and -m (the model); "
            "or give --profile with request-rate points and no --validate"
        )
    with serving(request.source, request.model) as server:
        if request.sweep is not None:
            settings = _best_settings(request.sweep, request.slo_p99_ms)
            configs = ServerConfigs(server.http_url.split("://")[1])
            configs.apply(request.model, settings)
            configs.close()
            progress(f"serving the sweep's best config: {describe(settings)}")
        url = server.grpc_url if request.protocol == "grpc" else server.http_url
        yield _Replica(
            request.model,
            url.split("://")[1],
            request.protocol,
            request.window_ms,
            request.input_data,
            progress,
        )


def _points(request: PlanRequest, replica: _Replica | None) -> tuple[list[ResultRow], float | None]:
    if request.profile is not None:
        return planning.rate_points(request.profile), None
    assert replica is not None
    replica.progress("finding the replica's saturated throughput ...")
    top = replica.saturation()
    replica.progress(f"saturated throughput {top:.0f} infer/s; Poisson rates for the fit ...")
    rows = replica.rates([top * f for f in FIT_FRACTIONS])
    if request.report is not None:
        write_csv(request.report / "rates.csv", rows, "request_rate")
    return rows, top


def run_plan(request: PlanRequest, progress: Callable[[str], None]) -> dict[str, Any]:
    """Plan (and with ``validate`` check) capacity; returns what ``--json`` writes."""
    curve = planning.read_curve(request.daily_curve) if request.daily_curve else ()
    target = planning.Target(qps=request.qps, curve=curve)
    pricing = planning.Pricing(
        price=request.price, unit=request.price_unit, gpus_per_replica=request.gpus_per_replica
    )
    needs_server = request.profile is None or request.validate
    with _replica(request, progress) if needs_server else contextlib.nullcontext() as replica:
        points, top = _points(request, replica)
        rates = [r.load for r in points]
        # The measured saturation anchors the capacity; the rates alone say little about it.
        capacity = top if top is not None and top > max(rates) else None
        model = fit(rates, [r.p99_us / 1e6 for r in points], capacity)
        result = planning.make_plan(model, target, request.slo_p99_ms, request.headroom, pricing)
        text = planning.table(result, pricing)
        progress(text)
        out: dict[str, Any] = {"plan": result.to_json(), "points": [r.load for r in points]}
        if request.validate:
            assert replica is not None
            progress("validating: one replica at 50%, 70% and 90% of its planned load ...")
            checks = planning.validate(result, model, replica.rates)
            progress(planning.validation_table(checks))
            out["validation"] = checks
    if request.report is not None:
        from tritonpipe.perf.sweep_report import write_plan_report

        index = write_plan_report(
            model, result.replicas, target.peak, request.slo_p99_ms, points, text, request.report
        )
        progress(f"report: {index}")
    return out
