"""The guided sweep against brute force on known-answer devices whose optimum is known exactly:
the device (A + B x rows ms per execution, one device shared by the instances, a client overhead
and the backend's turnaround) is simulated in concurrency mode, the way the sweep measures a
candidate, so brute force over the simulation is the true optimum. The guide ranks with a
profile that is wrong the way measured ones are, and more (A 30% high, B 20% low, the overhead
three to five times too long, the turnaround and the device share not measured, windows 4%
apart): on the second device its best-ranked point is 0.91 of the optimum, and the hill climb
over measurements, not the model, has to find the rest. Target (issue 23): >= 95% of brute force's best throughput
under the SLO with <= 30% of its measurements, the profile's three windows counted."""

import itertools

import pytest

from tritonpipe.capacity import search
from tritonpipe.capacity.candidates import make_grid
from tritonpipe.capacity.closed_loop import Level, closed_loop, next_between, slo_throughput
from tritonpipe.capacity.guide import config_at, guided, rank
from tritonpipe.capacity.service import Profile, Window
from tritonpipe.capacity.simulate import Config

GRID = make_grid(
    ["dev"],
    {
        "count": [1, 2, 3],
        "max_batch_size": [2, 4, 8, 16, 32],
        "max_queue_delay_us": [0, 1000, 4000],
    },
)
SIZES = (1, 2, 4, 8, 16, 32)
PROFILE_WINDOWS = 3


def _truth(a_ms: float, b_ms: float, slo_s: float):  # type: ignore[no-untyped-def]
    scores: dict[tuple[int, ...], tuple[int, float]] = {}

    def evaluate(point: tuple[int, ...]) -> tuple[int, float]:
        if point not in scores:
            config = config_at(GRID, point, "dev", Config())

            def at(c: int) -> Level:
                return closed_loop(
                    c,
                    lambda rows, _rng: (a_ms + b_ms * rows) / 1000,
                    config,
                    (0.0002, 0.0003, 0.0005),
                    requests=max(300, 20 * c),
                    turnaround_s=0.0003,
                    device_share=0.9,
                )

            score, _ = slo_throughput(at, slo_s)
            scores[point] = (1, score) if score > 0 else (0, score)
        return scores[point]

    return evaluate, scores


def _wrong_profile(a_ms: float, b_ms: float) -> Profile:
    windows = tuple(
        Window(
            service_s={b: (a_ms * 1.3 + b_ms * 0.8 * b) * j / 1000 for b in SIZES},
            overhead_s=(0.001, 0.0015),
        )
        for j in (0.96, 1.0, 1.04)
    )
    return Profile(windows=windows, config=Config(count=1, max_batch_size=32))


@pytest.mark.parametrize(
    ("a_ms", "b_ms", "slo_ms"), [(4, 1, 40), (8, 0.5, 60), (2, 0.25, 10)], ids=str
)
def test_guided_reaches_the_optimum_with_under_30_percent_of_the_measurements(
    a_ms: float, b_ms: float, slo_ms: float
) -> None:
    evaluate, truth = _truth(a_ms, b_ms, slo_ms / 1000)
    search.brute(GRID, evaluate)
    best = max(score for _, score in truth.values())
    assert len(truth) == GRID.size() == 45

    ranking = rank(GRID, _wrong_profile(a_ms, b_ms), slo_ms / 1000)
    budget = int(0.3 * GRID.size()) - PROFILE_WINDOWS
    measured = guided(GRID, evaluate, ranking, budget=budget)
    found = max(truth[p][1] for p in measured)
    assert found >= 0.95 * best, (found, best)
    assert len(measured) + PROFILE_WINDOWS <= 0.3 * GRID.size()


def test_the_climb_stops_at_the_budget_or_where_no_neighbour_is_promising() -> None:
    every = [(p, 100.0) for p in itertools.product(range(3), range(5), range(3))]
    rising = {p: (1, float(sum(p))) for p, _ in every}  # always one more step up
    assert len(guided(GRID, rising.__getitem__, every, budget=4)) == 4
    # Only the start is predicted within PRUNE of itself: nothing else is worth measuring.
    lonely = [(every[0][0], 100.0)] + [(p, 10.0) for p, _ in every[1:]]
    assert guided(GRID, rising.__getitem__, lonely, budget=10) == [every[0][0]]


def test_closed_loop_matches_the_device_arithmetic() -> None:
    # One instance, batches of 8 with 8 requests in flight and no overhead: every cycle is one
    # full batch of 4 + 1 x 8 ms, so the latency is 12 ms and the throughput 8 / 12 ms.
    config = Config(count=1, max_batch_size=8)
    level = closed_loop(8, lambda rows, _rng: (4 + rows) / 1000, config, requests=800)
    assert level.p99_s == pytest.approx(0.012)
    assert level.throughput == pytest.approx(8 / 0.012, rel=0.01)
    # Twice the requests in flight: each waits one batch, then runs in the next.
    level = closed_loop(16, lambda rows, _rng: (4 + rows) / 1000, config, requests=800)
    assert level.p99_s == pytest.approx(0.024)


def test_the_score_bisects_between_the_levels_that_met_and_broke_the_slo() -> None:
    assert next_between({1: True, 2: True, 4: True, 8: False}) == 6
    assert next_between({4: True, 8: False, 6: True}) == 7
    assert next_between({4: True, 8: False, 6: True, 7: False}) is None
    assert next_between({1: False, 2: False}) is None  # nothing met it
    assert next_between({1: True, 2: True}) is None  # nothing broke it

    # p99 = c ms, throughput = c: the SLO of 20 ms is met up to c = 20, which the ladder
    # (1, 2, 4, 8, 16, 32) alone would score as 16.
    visited: list[int] = []

    def at(c: int) -> Level:
        visited.append(c)
        return Level(c, float(c), c / 1000)

    score, _ = slo_throughput(at, 0.020, ladder=(1, 2, 4, 8, 16, 32, 64), refine=3)
    assert score == 20.0
    assert visited == [1, 2, 4, 8, 16, 32, 64, 24, 20, 22]

    # Nothing meets the SLO: minus the lowest p99 (ms), so the guide ranks the closest first.
    score, levels = slo_throughput(lambda c: Level(c, float(c), 0.050 + c / 1000), 0.020)
    assert score == pytest.approx(-51.0)
    assert [v.concurrency for v in levels] == [1, 2]  # broken twice: stopped
