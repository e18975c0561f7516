"""The sweep's guided search: one service profile of the model, every grid point simulated
the way the sweep measures it (concurrency mode, closed_loop.py), then a hill climb over the
measurements that starts at the simulation's best and steps one knob at a time, measuring the
neighbours the simulation finds promising, best first. The simulation ranks and prunes; only
measurements choose the winner."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from tritonpipe.capacity.candidates import Grid
from tritonpipe.capacity.closed_loop import Level, closed_loop, slo_throughput
from tritonpipe.capacity.service import Profile
from tritonpipe.capacity.simulate import Config
from tritonpipe.errors import PerfError

Point = tuple[int, ...]
# At most this share of the grid is measured (the caller's budget wins when given).
SHARE = 0.25
# A neighbour the simulation predicts below this share of the current point's prediction is not
# measured: it would take a model error larger than 1 / PRUNE to make it the better one.
PRUNE = 0.85
# A step must beat the current best measurement by this factor (search.MARGIN's reason).
MARGIN = 0.03
# The profile only ranks and prunes, and measurements choose: windows that disagree are not
# refused (the planner refuses past service.STABILITY); an off ranking costs measurements.
GUIDE_STABILITY = math.inf
REQUESTS = 400  # simulated per concurrency level (at least 25 per request in flight)


def config_at(grid: Grid, point: Point, model: str, base: Config) -> Config:
    knobs = grid.settings(point).get(model, {})
    preferred = knobs.get("preferred_batch_size")
    largest = knobs.get("max_batch_size", base.max_batch_size)
    return Config(
        count=knobs.get("count", base.count),
        max_batch_size=largest,
        max_queue_delay_us=knobs.get("max_queue_delay_us", base.max_queue_delay_us),
        preferred_batch_sizes=(
            base.preferred_batch_sizes
            if preferred is None
            else ((preferred,) if 0 < preferred < largest else ())
        ),
        devices=base.devices,
    )


def predicted_score(profile: Profile, config: Config, slo_s: float) -> float:
    """The simulated sweep score of ``config``: the best throughput within ``slo_s`` over the
    concurrency ladder, with the profile's pooled service times, overheads, turnaround and
    device share."""
    window = profile.pooled()
    largest = config.max_batch_size
    if largest > max(profile.sizes):
        raise PerfError(
            f"max_batch_size {largest} is larger than the largest batch size profiled "
            f"({max(profile.sizes)})"
        )
    times = [0.0, *(window.service(n) for n in range(1, largest + 1))]
    slots = min(config.count, config.devices)
    full = slots * largest / (times[largest] * profile.device_share)

    def at(c: int) -> Level:
        # The overheads measured at about the rate this concurrency reaches.
        rate = min(full, c / times[min(c, largest)])
        return closed_loop(
            c,
            lambda rows, _rng: times[rows],
            config,
            window.overhead_at(rate),
            requests=max(REQUESTS, 25 * c),
            turnaround_s=window.turnaround_s,
            device_share=profile.device_share,
        )

    return slo_throughput(at, slo_s)[0]


def rank(grid: Grid, profile: Profile, slo_s: float) -> list[tuple[Point, float]]:
    """Every valid point of ``grid`` with its simulated sweep score, best first."""
    models = {d.model for d in grid.dimensions}
    if len(models) != 1:
        raise PerfError(
            f"the guided search tunes one model at a time; this grid varies {sorted(models)}: "
            "use --strategy quick or brute, or --only one model"
        )
    (model,) = models
    scored = [
        (point, predicted_score(profile, config_at(grid, point, model, profile.config), slo_s))
        for point in points(grid)
    ]
    return sorted(scored, key=lambda pr: -pr[1])


def points(grid: Grid) -> list[Point]:
    every = itertools.product(*(range(len(d.values)) for d in grid.dimensions))
    return [p for p in every if grid.valid(p)]


def neighbours(grid: Grid, point: Point) -> list[Point]:
    """The valid points one step away in one knob."""
    out = []
    for d, dimension in enumerate(grid.dimensions):
        for step in (-1, 1):
            i = point[d] + step
            if 0 <= i < len(dimension.values):
                near = point[:d] + (i,) + point[d + 1 :]
                if grid.valid(near):
                    out.append(near)
    return out


def _better(new: tuple[int, float], old: tuple[int, float]) -> bool:
    if new[0] != old[0]:
        return new[0] > old[0]
    return new[1] > old[1] + abs(old[1]) * MARGIN


def guided(
    grid: Grid,
    evaluate: Callable[[Point], tuple[int, float]],
    ranking: list[tuple[Point, float]],
    progress: Callable[[str], None] = lambda _: None,
    budget: int | None = None,
) -> list[Point]:
    """Hill climbing on measurements, guided by ``ranking`` (point -> simulated score): start
    at the best-ranked point; measure the unmeasured neighbours of the best point measured so
    far, the best predicted first, leaving out those predicted below PRUNE of that point's
    prediction; move to a neighbour that measures better. Stops when the best point has no
    promising neighbour left or after ``budget`` measurements (default: SHARE of the grid, at
    least 2). Returns the points measured, in order."""
    predicted = dict(ranking)
    limit = budget if budget is not None else max(2, math.ceil(SHARE * len(ranking)))
    scores: dict[Point, tuple[int, float]] = {}

    def measure(point: Point) -> None:
        value = predicted[point]
        said = f"{value:.0f} infer/s" if value > 0 else f"to miss the SLO (p99 {-value:.1f} ms)"
        progress(f"guided: {grid.settings(point)} predicted {said}")
        scores[point] = evaluate(point)

    current = ranking[0][0]
    measure(current)
    while len(scores) < limit:
        # No pruning while the simulation has the current point missing the SLO (score < 0).
        floor = PRUNE * predicted[current] if predicted[current] > 0 else -math.inf
        near = [
            p
            for p in neighbours(grid, current)
            if p not in scores and p in predicted and predicted[p] >= floor
        ]
        if not near:
            break
        step = max(near, key=lambda p: predicted[p])
        measure(step)
        if _better(scores[step], scores[current]):
            current = step
    return list(scores)
