"""The batching simulation against exact queueing results, and its batching behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tritonpipe.capacity.simulate import Config, max_rate, simulate
from tritonpipe.errors import PerfError


def test_one_instance_without_batching_is_mm1() -> None:
    # M/M/1: the time in system is exponential with rate mu - lambda.
    service, rate = 0.001, 700.0
    run = simulate(rate, lambda _n, rng: float(rng.exponential(service)), Config(), requests=200000)
    exact = math.log(100) / (1 / service - rate)
    assert run.p99() == pytest.approx(exact, rel=0.05)
    assert float(np.mean(run.latencies_s)) == pytest.approx(1 / (1 / service - rate), rel=0.05)


def test_fixed_service_is_md1() -> None:
    # M/D/1: Pollaczek-Khinchine mean wait rho S / (2 (1 - rho)).
    service, rate = 0.001, 800.0
    rho = rate * service
    run = simulate(rate, lambda _n, _rng: service, Config(), requests=200000)
    wait = float(np.mean(run.latencies_s)) - service
    assert wait == pytest.approx(rho * service / (2 * (1 - rho)), rel=0.05)


def test_batches_grow_with_the_load_up_to_the_largest() -> None:
    def device(n: int, _rng: np.random.Generator) -> float:
        return 0.002 + 0.00025 * n

    config = Config(max_batch_size=8)
    light = simulate(50, device, config, requests=5000)
    heavy = simulate(3000, device, config, requests=20000)
    assert light.mean_batch < 1.2
    assert 7.5 < heavy.mean_batch <= 8  # past saturation every batch is full
    assert heavy.p99() > 10 * light.p99()


def test_queue_delay_waits_for_a_fuller_batch() -> None:
    def device(n: int, _rng: np.random.Generator) -> float:
        return 0.001

    no_delay = simulate(200, device, Config(max_batch_size=8), requests=5000)
    delayed = simulate(
        200, device, Config(max_batch_size=8, max_queue_delay_us=5000), requests=5000
    )
    assert delayed.mean_batch > no_delay.mean_batch + 0.3
    # No request waits longer than the delay for its batch to form when the device is idle.
    assert float(np.max(delayed.latencies_s)) <= 0.005 + 0.001 + 1e-9


def test_instances_on_one_shared_device_do_not_add_capacity() -> None:
    def device(_n: int, _rng: np.random.Generator) -> float:
        return 0.002

    shared = simulate(700, device, Config(count=2, devices=1), requests=20000)
    separate = simulate(700, device, Config(count=2, devices=2), requests=20000)
    assert shared.utilisation > 0.99  # overloaded: 1/2 ms is 500/s
    assert separate.p99() < 0.02 < shared.p99()


def test_overhead_is_added_to_each_request() -> None:
    run = simulate(10, lambda _n, _rng: 0.001, Config(), overhead_s=[0.003], requests=1000)
    assert float(np.min(run.latencies_s)) == pytest.approx(0.004)


def test_max_rate_bisects_a_monotone_p99() -> None:
    assert max_rate(lambda r: r / 1000, 0.5, 1000.0, steps=30) == pytest.approx(500, rel=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(PerfError, match="rate > 0"):
        simulate(0, lambda _n, _rng: 0.001, Config())
    with pytest.raises(PerfError, match="count, max_batch_size"):
        Config(count=0)


def test_the_batcher_follows_tritons_rule_on_a_known_arrival_pattern() -> None:
    # Two instances sharing one device, 5 ms an execution, queue delay 2 ms, largest batch 8.
    # Triton (dynamic_batch_scheduler.cc) forms a batch when the OLDEST queued request has
    # waited the delay, or at once when the queue holds the largest batch; a batch formed
    # while no instance is free keeps growing until one takes it; an instance that takes a
    # batch while the other holds the device waits for the device with it.
    from collections import deque

    from tritonpipe.capacity.simulate import Batcher

    server: Batcher[float] = Batcher(
        Config(count=2, max_batch_size=8, max_queue_delay_us=2000),
        lambda _n, _rng: 0.005,
        np.random.default_rng(0),
    )
    queue: deque[float] = deque([0.0])
    assert server.form(0.0, queue, float) == ([], pytest.approx(0.002))  # waits for the delay
    assert server.form(0.002, queue, float) == ([([0.0], pytest.approx(0.007))], None)
    queue.append(0.003)
    assert server.form(0.003, queue, float)[0] == []
    # The second instance takes it at 5 ms and waits for the device until 7 ms.
    assert server.form(0.005, queue, float)[0] == [([0.003], pytest.approx(0.012))]
    queue.extend([0.006, 0.0065])
    assert server.form(0.0065, queue, float)[0] == []  # no instance free
    server.free_instances += 1  # the first one, at 7 ms: its oldest request has waited 1 ms
    assert server.form(0.007, queue, float) == ([], pytest.approx(0.008))
    assert server.form(0.008, queue, float)[0] == [([0.006, 0.0065], pytest.approx(0.017))]
    # Eight queued at once (the largest batch) go without waiting for the delay.
    server.free_instances += 1
    queue.extend([0.02] * 9)
    sent, _ = server.form(0.02, queue, float)
    assert [len(b) for b, _ in sent] == [8] and list(queue) == [0.02]
    assert sent[0][1] == pytest.approx(0.025)


def test_a_cpu_ceiling_is_an_md1_queue_in_front_of_the_batcher() -> None:
    # With an instant model the latency is the wait for the CPU alone: M/D/1 with service
    # 1 / ceiling, Pollaczek-Khinchine mean wait rho S / (2 (1 - rho)).
    ceiling, rate = 1000.0, 800.0
    rho = rate / ceiling
    run = simulate(rate, lambda _n, _rng: 0.0, Config(), requests=200000, ceiling=ceiling)
    exact = rho * (1 / ceiling) / (2 * (1 - rho))
    assert float(np.mean(run.latencies_s)) == pytest.approx(exact, rel=0.05)
    # Without one the same model answers at once.
    assert float(np.max(simulate(rate, lambda _n, _rng: 0.0, Config()).latencies_s)) == 0.0


def test_front_end_serves_in_order_one_at_a_time() -> None:
    from tritonpipe.capacity.simulate import front_end

    out = front_end(np.array([0.0, 0.0005, 0.003, 0.0031]), 1000.0)
    assert out.tolist() == pytest.approx([0.001, 0.002, 0.004, 0.005])
