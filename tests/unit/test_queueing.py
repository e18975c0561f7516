import math

import pytest

from tritonpipe.errors import PerfError, SpecError
from tritonpipe.perf.plan import Pricing, Target, make_plan
from tritonpipe.perf.queueing import QueueModel, fit, wait_p99


def test_wait_p99_is_exact_for_mm1() -> None:
    # M/M/1: P(W > t) = rho * exp(-(mu - lambda) t), so t99 = ln(100 rho) / (mu - lambda).
    mu = 1000.0
    for rate in (100.0, 500.0, 900.0):
        expected = math.log(100 * rate / mu) / (mu - rate)
        assert wait_p99(rate, 1 / mu) == pytest.approx(expected, rel=1e-12)
    assert wait_p99(5.0, 1 / mu) == 0.0  # rho <= 1%: nobody waits at the 99th percentile
    assert wait_p99(mu, 1 / mu) == math.inf


def test_fit_recovers_known_parameters() -> None:
    truth = QueueModel(base_s=0.004, service_s=1 / 2000, k=1.6)
    rates = [200.0, 600.0, 1000.0, 1400.0, 1700.0, 1850.0]
    model = fit(rates, [truth.p99(r) for r in rates])
    assert model.capacity == pytest.approx(2000, rel=0.02)
    assert model.base_s == pytest.approx(0.004, rel=0.05)
    assert model.k == pytest.approx(1.6, rel=0.05)
    assert model.cs2 == pytest.approx(2.2, rel=0.1)
    assert model.fit_error < 0.01


def test_fit_with_a_known_capacity_and_noise() -> None:
    truth = QueueModel(base_s=0.002, service_s=1 / 500, k=1.0)
    rates = [100.0, 200.0, 300.0, 400.0, 450.0]
    noisy = [truth.p99(r) * f for r, f in zip(rates, (1.05, 0.95, 1.04, 0.97, 1.02), strict=True)]
    model = fit(rates, noisy, capacity=500)
    assert model.capacity == 500
    for r in rates:
        assert model.p99(r) == pytest.approx(truth.p99(r), rel=0.1)


def test_max_rate_meets_the_slo_exactly() -> None:
    model = QueueModel(base_s=0.005, service_s=0.001, k=1.0)
    rate = model.max_rate(0.020)
    assert model.p99(rate) == pytest.approx(0.020, rel=1e-6)
    with pytest.raises(PerfError, match="below the p99 the model predicts with no load, 5.00 ms"):
        model.max_rate(0.004)


def test_fit_needs_three_points() -> None:
    with pytest.raises(PerfError, match="at least 3 request-rate points, got 2"):
        fit([1.0, 2.0], [0.01, 0.02])


def test_plan_replicas_cost_and_prediction() -> None:
    # M/M/1-like replica, capacity 1000/s, 5 ms at no load; the SLO of 20 ms allows rate r
    # where 0.005 + ln(100 r/1000)/(1000 - r) = 0.020.
    model = QueueModel(base_s=0.005, service_s=0.001, k=1.0)
    most = model.max_rate(0.020)
    plan = make_plan(model, Target(qps=5000), 20, 0.2, Pricing(price=2.0))
    assert plan.replicas == math.ceil(5000 / (most * 0.8))
    assert plan.planned_qps_per_replica == pytest.approx(5000 / plan.replicas)
    assert plan.utilisation == pytest.approx(plan.planned_qps_per_replica / 1000)
    assert plan.predicted_p99_ms <= 20
    assert plan.cost_per_hour == pytest.approx(2.0 * plan.replicas)
    assert plan.cost_per_million == pytest.approx(plan.cost_per_hour / (5000 * 3600) * 1e6)


def test_plan_with_a_daily_curve_and_gpu_prices() -> None:
    model = QueueModel(base_s=0.001, service_s=0.0001, k=1.0)  # 10k/s per replica
    curve = tuple([2000.0] * 12 + [30000.0] * 12)
    pricing = Pricing(price=3.0, unit="gpu", gpus_per_replica=2)
    plan = make_plan(model, Target(curve=curve), 10, 0.0, pricing)
    assert plan.peak_qps == 30000 and plan.mean_qps == 16000
    assert plan.cost_per_hour == pytest.approx(plan.replicas * 6.0)
    assert plan.autoscaled[0] == 1 and plan.autoscaled[-1] == plan.replicas
    assert plan.autoscaled_cost_per_million is not None
    assert plan.autoscaled_cost_per_million < plan.cost_per_million


def test_plan_inputs_are_checked() -> None:
    with pytest.raises(SpecError, match="--qps or --daily-curve"):
        Target()
    with pytest.raises(SpecError, match="--price-unit 'euro'"):
        Pricing(price=1, unit="euro")
    with pytest.raises(SpecError, match="--headroom 1"):
        make_plan(QueueModel(0.001, 0.001, 1), Target(qps=1), 10, 1.0, Pricing(price=1))
