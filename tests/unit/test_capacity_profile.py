"""Service profiles and predictions from them: repeats, refusals, warnings and intervals, with
measurements written here (a unit test fakes the server below the level it tests)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest

from tritonpipe.capacity.predict import Predictor, best_config, candidates
from tritonpipe.capacity.service import (
    Level,
    Profile,
    Window,
    batch_sizes,
    batch_times,
    measure_profile,
    served_config,
    window_of,
)
from tritonpipe.capacity.simulate import Config
from tritonpipe.errors import PerfError

OVERHEAD = tuple(0.0005 + 0.0001 * (i % 5) for i in range(200))


def device(a_s: float, b_s: float, noise: list[float] | None = None) -> Callable[[], Window]:
    """Windows of an A + B x rows device; ``noise`` scales each window in turn."""
    scales = itertools.cycle(noise or [1.0])

    def measure() -> Window:
        scale = next(scales)
        levels = [
            Level({b: (100, int((a_s + b_s * b) * scale * 1e9 * 100))}, 50.0 * b, OVERHEAD)
            for b in (1, 2, 4, 8)
        ]
        return window_of(levels, 8)

    return measure


def test_batch_sizes_double_up_to_the_largest() -> None:
    assert batch_sizes(8) == [1, 2, 4, 8]
    assert batch_sizes(24) == [1, 2, 4, 8, 16, 24]
    assert batch_sizes(1) == [1]


def test_a_straight_line_device_is_recovered_without_warnings() -> None:
    profile = measure_profile(device(0.004, 0.001), Config(max_batch_size=8))
    a, b, error = profile.fit()
    assert a == pytest.approx(0.004) and b == pytest.approx(0.001) and error < 1e-9
    assert len(profile.windows) == 3 and profile.warnings == ()
    assert profile.pooled().service(6) == pytest.approx(0.010)  # between measured sizes


def test_unstable_windows_are_repeated_then_kept_when_they_settle() -> None:
    calls: list[str] = []
    profile = measure_profile(
        device(0.004, 0.001, [1.6, 1.0, 1.0, 1.0]),
        Config(max_batch_size=8),
        progress=calls.append,
    )
    assert len(calls) == 4  # one more window than the three asked for
    assert all(w.service_s[1] == pytest.approx(0.005) for w in profile.windows)


def test_windows_that_never_agree_are_refused() -> None:
    with pytest.raises(
        PerfError, match=r"not stable: batch \d+ varied \d+% across the last 3 windows"
    ):
        measure_profile(device(0.004, 0.001, [1.0, 1.5, 2.2]), Config(max_batch_size=8))


def test_a_bent_service_curve_is_a_warning() -> None:
    def bent() -> Window:
        levels = [
            Level({b: (100, int((0.001 * b**2 + 0.001) * 1e11))}, 1.0, OVERHEAD)
            for b in (1, 2, 4, 8)
        ]
        return window_of(levels, 8)

    profile = measure_profile(bent, Config(max_batch_size=8))
    assert len(profile.warnings) == 1 and "not a straight line" in profile.warnings[0]


def test_rare_batch_sizes_are_interpolated_and_overheads_follow_the_load() -> None:
    levels = [
        Level({1: (100, 100 * 5_000_000), 3: (5, 5 * 99_000_000)}, 100.0, OVERHEAD),
        Level({8: (100, 100 * 12_000_000)}, 600.0, tuple(o + 0.002 for o in OVERHEAD)),
    ]
    window = window_of(levels, 8)
    assert window.service_s[4] == pytest.approx(0.005 + 3 / 7 * 0.007)  # b=3 seen 5 times only
    assert window.overhead_at(50) == window.overhead_s
    assert min(window.overhead_at(700)) == pytest.approx(min(OVERHEAD) + 0.002)
    with pytest.raises(PerfError, match="no executions per batch size"):
        window_of([Level({}, 1.0, OVERHEAD)], 8)


def test_triton_statistics_per_batch_size_and_served_configs() -> None:
    stats = {
        "model_stats": [
            {
                "name": "m",
                "batch_stats": [
                    {
                        "batch_size": 4,
                        "compute_input": {"count": 2, "ns": 100},
                        "compute_infer": {"count": 2, "ns": 1000},
                        "compute_output": {"count": 2, "ns": 10},
                    }
                ],
            },
            {"name": "other", "batch_stats": [{"batch_size": 1, "compute_infer": {"count": 9}}]},
        ]
    }
    assert batch_times(stats, "m") == {4: (2, 1110)}
    config = {
        "max_batch_size": 32,
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
        "dynamic_batching": {"preferred_batch_size": [8, 32], "max_queue_delay_microseconds": 500},
    }
    assert served_config(config) == Config(
        count=2, max_batch_size=32, max_queue_delay_us=500, preferred_batch_sizes=(8,)
    )


def test_a_latency_of_zero_is_refused() -> None:
    with pytest.raises(PerfError, match="a latency of 0 cannot be measured"):
        Profile((Window({1: 0.0}, OVERHEAD),), Config())
    with pytest.raises(PerfError, match="overhead samples"):
        Profile((Window({1: 0.001}, ()),), Config())


def test_profile_json_round_trip() -> None:
    profile = measure_profile(device(0.004, 0.001), Config(max_batch_size=8, count=2), "m")
    again = Profile.from_json(profile.to_json())
    assert again == profile
    with pytest.raises(PerfError, match="not a service profile"):
        Profile.from_json({"windows": [{}]})


def test_prediction_intervals_cover_each_windows_answer() -> None:
    profile = Profile(
        (
            Window({1: 0.005, 2: 0.006, 4: 0.008}, OVERHEAD),
            Window({1: 0.0055, 2: 0.0066, 4: 0.0088}, OVERHEAD),
            Window({1: 0.0045, 2: 0.0054, 4: 0.0072}, OVERHEAD),
        ),
        Config(max_batch_size=4),
    )
    predictor = Predictor(profile, requests=4000)
    p99 = predictor.p99(200)
    assert p99.low < p99.value < p99.high  # the windows give different answers
    base = predictor.base()
    assert base.value >= 0.005 + min(OVERHEAD)  # one execution and the overhead, never 0
    capacity = predictor.capacity(0.03)
    assert capacity.low < capacity.value < capacity.high < predictor.saturation() * 1.2
    with pytest.raises(PerfError, match="below the p99 predicted with no load"):
        predictor.capacity(0.004)


def test_best_config_prefers_batching_on_a_batching_device() -> None:
    windows = (Window({1: 0.004, 2: 0.0045, 4: 0.0055, 8: 0.0075}, OVERHEAD),)
    profile = Profile(windows, Config(max_batch_size=8))
    ranked = best_config(profile, candidates(profile, [1], [0]), 0.05)
    assert [c.max_batch_size for c, _ in ranked][0] == 8
    assert ranked[0][1] > 3 * ranked[-1][1]


def test_extrapolation_past_the_largest_batch_measured_never_slopes_down() -> None:
    # Batch 8 measured slower than batch 9 on a busy machine: the last two slope down, and
    # extrapolating along them gave a negative time for batch 32 (a profile then refused).
    window = Window({1: 0.007, 2: 0.008, 4: 0.0115, 8: 0.0162, 9: 0.0102}, (0.001,))
    assert window.service(32) >= window.service(9) > 0
    assert Window({1: 0.002, 2: 0.001}, (0.001,)).service(8) == pytest.approx(0.001)


def _digits_like(scales: list[float]) -> Callable[[], Window]:
    """Windows whose batch-1 time moves 0.5-0.7 ms (37%) while batch 8 agrees within 5%."""
    times = itertools.cycle(scales)

    def measure() -> Window:
        b1 = next(times)
        levels = [Level({1: (100, int(b1 * 1e11)), 8: (100, int(0.003 * 1e11))}, 500.0, OVERHEAD)]
        return window_of(levels, 8)

    return measure


def test_a_spread_small_against_the_slo_is_accepted_with_a_warning_and_a_wider_interval() -> None:
    measure = _digits_like([0.0005, 0.0007, 0.00055])
    config = Config(max_batch_size=8)
    # Without an SLO (or with one the spread is large against) the relative limit refuses.
    with pytest.raises(PerfError, match="batch 1 varied 36%"):
        measure_profile(measure, config)
    with pytest.raises(PerfError, match=r"limit 20% and 2.5% of the SLO"):
        measure_profile(measure, config, slo_s=0.004)  # 0.2 ms is 5% of 4 ms
    profile = measure_profile(measure, config, slo_s=0.020)  # 0.2 ms is 1% of 20 ms
    assert len(profile.windows) == 3
    assert any("batch 1 36% (0.20 ms)" in w and "accepted" in w for w in profile.warnings)
    # The interval spans the windows' envelopes: the slowest at every batch size together.
    fastest, slowest = profile.envelopes()
    assert slowest.service_s[1] == pytest.approx(0.0007) and fastest.service_s[1] == pytest.approx(
        0.0005
    )
    predictor = Predictor(profile, requests=4000)
    p99 = predictor.p99(100)
    assert p99.high >= predictor._p99(100, slowest) and p99.low <= predictor._p99(100, fastest)


def test_a_spread_large_against_the_slo_is_still_refused_at_any_batch_size() -> None:
    # Batch 8 moves 3 to 4 ms (29%, 1 ms): 5% of a 20 ms SLO, over the floor.
    def measure_factory() -> Callable[[], Window]:
        b8 = itertools.cycle([0.003, 0.004, 0.0033])

        def measure() -> Window:
            levels = [
                Level({1: (100, int(0.0005 * 1e11)), 8: (100, int(next(b8) * 1e11))}, 1.0, OVERHEAD)
            ]
            return window_of(levels, 8)

        return measure

    with pytest.raises(PerfError, match="batch 8 varied 30%"):
        measure_profile(measure_factory(), Config(max_batch_size=8), slo_s=0.020)
    assert measure_profile(measure_factory(), Config(max_batch_size=8), slo_s=0.100).windows


def test_an_instance_left_waiting_at_the_highest_load_sets_a_ceiling_the_plan_keeps() -> None:
    # The digits replica on 2 cores: batch 8 takes 2 ms, but at the highest concurrency the one
    # instance executed 100 batches of 8 a second (2200 rows/s would be 275): it waited for
    # requests, 20% busy. The CPU outside the compute caps the replica at what it carried.
    def starved(throughput: float, executions: float) -> Window:
        levels = [
            Level({1: (100, int(0.001 * 1e11))}, 500.0, OVERHEAD),
            Level({8: (100, int(0.002 * 1e11))}, throughput, OVERHEAD, executions, 8.0),
        ]
        return window_of(levels, 8)

    window = starved(800.0, 100.0)
    assert window.ceiling_per_s == 800.0 and window.turnaround_s == 0.0
    profile = Profile(
        (window, starved(780.0, 97.5), starved(820.0, 102.5)), Config(max_batch_size=8)
    )
    assert Profile.from_json(profile.to_json()) == profile
    predictor = Predictor(profile)
    assert predictor.saturation() == pytest.approx(800.0)
    capacity = predictor.capacity(0.02)
    assert 600 < capacity.value < 800 and capacity.high <= 820  # never past the ceiling
    # Near the ceiling the wait for the CPU grows the p99 (without it: 2 ms executions).
    assert predictor.p99(0.95 * 800).value > 3 * predictor.p99(0.5 * 800).value
    # An instance busy at the highest load sets none: the device is the bottleneck.
    busy = window_of([Level({8: (100, int(0.002 * 1e11))}, 3900.0, OVERHEAD, 490.0, 8.0)], 8)
    assert busy.ceiling_per_s == 0.0


def test_a_profile_ceiling_caps_the_plan_and_survives_json() -> None:
    profile = measure_profile(device(0.0001, 0.00001), Config(max_batch_size=8), "m")
    free = Predictor(profile).capacity(0.02).value
    capped = replace(profile, ceiling_per_s=free / 2)
    assert Profile.from_json(capped.to_json()) == capped
    predictor = Predictor(capped)
    assert predictor.saturation() == pytest.approx(free / 2)
    assert predictor.capacity(0.02).high <= free / 2


def test_a_short_saturation_is_offered_again_just_above_what_it_carried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Far above its ceiling the client piles requests up and carries less than just above it:
    offered a little more than it carried while it carries all of it, the ceiling is the most
    it carried (never more than it was offered). Fakes only the measurement: a Poisson level
    carrying what a replica capped at 600/s carries, less when flooded."""
    from tritonpipe.capacity import measure

    offered_at: list[float] = []
    profile = measure_profile(device(0.0001, 0.00001), Config(max_batch_size=8), "m")
    full = Predictor(profile).saturation()  # what the first offer is

    def carried(_m: str, _u: str, _p: str, rate: float, _w: int, _i: str) -> float:
        offered_at.append(rate)
        return 0.45 * full if rate >= 0.9 * full else min(rate, 0.6 * full)

    monkeypatch.setattr(measure, "saturation_rate", carried)
    capped = measure.with_ceiling(profile, "u", "grpc", 100, "random")
    # Flooded at full: 0.45; then 0.495, 0.5445 and 0.59895 all carried, 0.6588 carried 0.6.
    expected = [1.0, 0.495, 0.5445, 0.59895, 0.658845]
    assert offered_at == pytest.approx([full * e for e in expected])
    assert capped.ceiling_per_s == pytest.approx(0.6 * full)
    assert any("caps the replica" in w for w in capped.warnings)

    offered_at.clear()
    monkeypatch.setattr(measure, "saturation_rate", lambda *a: 0.95 * a[3])
    assert measure.with_ceiling(profile, "u", "grpc", 100, "random") == profile
    assert len(offered_at) == 0


def test_a_rate_with_a_stalled_window_is_measured_again_and_the_calmer_run_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One window's p99 far over the other two at the same rate is the machine stalling, not
    queueing: that rate is measured once more and the run whose windows agree is kept; windows
    that agree are measured once. Fakes only the Poisson level."""
    from tritonpipe.capacity import plan
    from tritonpipe.perf.generator import LevelResult
    from tritonpipe.perf.results_csv import ResultRow

    def level(p99s: tuple[float, ...], latency: float) -> LevelResult:
        row = ResultRow(**{f: 0 for f in ResultRow.__dataclass_fields__} | {"throughput": 100.0})
        return LevelResult(row, {}, True, 100, 0, None, latencies_s=(latency,) * 100,
                           window_p99_s=p99s)  # fmt: skip

    runs = iter([level((0.020, 0.021, 0.090), 0.090), level((0.020, 0.022, 0.021), 0.021),
                 level((0.030, 0.031, 0.032), 0.031)])  # fmt: skip
    calls: list[float] = []

    def poisson(_m: str, _u: str, _p: str, rate: float, *_a: object, **_k: object) -> LevelResult:
        calls.append(rate)
        return next(runs)

    monkeypatch.setattr(plan, "poisson_level", poisson)
    said: list[str] = []
    measured = plan.measure_rates("m", "u", "grpc", [100.0, 150.0], 100, progress=said.append)
    assert calls == [100.0, 100.0, 150.0]
    assert [p for _, p in measured] == pytest.approx([0.021, 0.031])
    assert any("disagree: measured again" in s for s in said)
