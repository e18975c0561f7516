"""The `plan` command's steps: the replica's service profile (a saved profile.json, or measured
on one replica serving a sweep's best config), the simulation it drives, the plan, its report,
and its validation."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonpipe.capacity import plan as planning
from tritonpipe.capacity.predict import Predictor
from tritonpipe.capacity.service import Profile
from tritonpipe.errors import PerfError, SpecError


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
    window_ms: int = 500
    input_data: str = "random"
    report: Path | None = None
    devices: int = 1
    tune: bool = False
    stability: float = 0.2  # windows may differ by this much (max - min over median)


@dataclass
class _Replica:
    """One replica being measured: the generator's address and protocol."""

    model: str
    url: str
    http: str
    protocol: str
    window_ms: int
    input_data: str
    progress: Callable[[str], None]

    def rates(self, rates: list[float]) -> list[tuple[float, float]]:
        return planning.measure_rates(
            self.model,
            self.url,
            self.protocol,
            rates,
            max(2000, 4 * self.window_ms),
            self.input_data,
            self.progress,
        )

    def profile(self, devices: int, stability: float, slo_s: float) -> Profile:
        from tritonpipe.capacity.measure import profile_server

        return profile_server(
            self.model,
            self.url,
            self.protocol,
            self.http,
            self.window_ms,
            self.input_data,
            devices,
            self.progress,
            stability=stability,
            slo_s=slo_s,
        )


def _best_settings(results: Path, slo_p99_ms: float) -> dict[str, dict[str, int]]:
    from tritonpipe.capacity.sweep import Measurement, Objective
    from tritonpipe.capacity.sweep_report import no_winner, ranked

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
    from tritonpipe.capacity.candidates import ServerConfigs, describe
    from tritonpipe.capacity.session import serving

    if request.source is None or request.model is None:
        raise SpecError(
            "measuring needs --source (spec or repository) and -m (the model); "
            "or give --profile with a saved profile.json and no --validate"
        )
    with serving(request.source, request.model) as server:
        http = server.http_url.split("://")[1]
        if request.sweep is not None:
            settings = _best_settings(request.sweep, request.slo_p99_ms)
            configs = ServerConfigs(http)
            configs.apply(request.model, settings)
            configs.close()
            progress(f"serving the sweep's best config: {describe(settings)}")
        url = server.grpc_url if request.protocol == "grpc" else server.http_url
        yield _Replica(
            request.model,
            url.split("://")[1],
            http,
            request.protocol,
            request.window_ms,
            request.input_data,
            progress,
        )


def read_profile(path: Path) -> Profile:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PerfError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise PerfError(
            f"{path}: not a profile.json. plan no longer fits a curve to request-rate points: "
            "measure the service profile with --source and -m (it is saved as profile.json "
            "in the --report folder) and pass that file"
        ) from None
    try:
        return Profile.from_json(data)
    except PerfError as exc:
        raise PerfError(f"{path}: {exc}") from None


def run_plan(request: PlanRequest, progress: Callable[[str], None]) -> dict[str, Any]:
    """Plan (and with ``validate`` check) capacity; returns what ``--json`` writes."""
    curve = planning.read_curve(request.daily_curve) if request.daily_curve else ()
    target = planning.Target(qps=request.qps, curve=curve)
    pricing = planning.Pricing(
        price=request.price, unit=request.price_unit, gpus_per_replica=request.gpus_per_replica
    )
    needs_server = request.profile is None or request.validate
    with _replica(request, progress) if needs_server else contextlib.nullcontext() as replica:
        if request.profile is not None:
            profile = read_profile(request.profile)
        else:
            assert replica is not None
            profile = replica.profile(request.devices, request.stability, request.slo_p99_ms / 1000)
        if request.report is not None:
            request.report.mkdir(parents=True, exist_ok=True)
            (request.report / "profile.json").write_text(json.dumps(profile.to_json()) + "\n")
        progress("simulating the batcher with the profile (each window alone for the intervals)")
        predictor = Predictor(profile)
        result = planning.make_plan(
            predictor, target, request.slo_p99_ms, request.headroom, pricing, request.tune
        )
        text = planning.table(result, pricing)
        progress(text)
        out: dict[str, Any] = {"plan": result.to_json(), "profile": profile.to_json()}
        checks: list[dict[str, Any]] = []
        if request.validate:
            assert replica is not None
            progress("validating: one replica at 50%, 70% and 90% of its SLO capacity ...")
            checks = planning.validate(result, predictor, replica.rates)
            progress(planning.validation_table(checks))
            out["validation"] = checks
    if request.report is not None:
        from tritonpipe.capacity.sweep_report import write_plan_report

        index = write_plan_report(
            predictor,
            result.replicas,
            target.peak,
            request.slo_p99_ms,
            checks,
            text,
            request.report,
        )
        progress(f"report: {index}")
    return out
