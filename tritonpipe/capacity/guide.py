"""The sweep's guided search: one service profile of the model, the simulation's SLO capacity
for every grid point, then measurements of the few points it ranks first. The simulation
ranks; only measurements choose the winner."""

from __future__ import annotations

import math
from collections.abc import Callable

from tritonpipe.capacity.candidates import Grid
from tritonpipe.capacity.predict import Predictor
from tritonpipe.capacity.service import Profile
from tritonpipe.capacity.simulate import Config
from tritonpipe.errors import PerfError

Point = tuple[int, ...]
SHARE = 0.1  # of the grid measured after the profile (at least 2 points)


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


def rank(grid: Grid, profile: Profile, slo_s: float) -> list[tuple[Point, float]]:
    """Every valid point of ``grid`` with its simulated SLO capacity, best first."""
    models = {d.model for d in grid.dimensions}
    if len(models) != 1:
        raise PerfError(
            f"the guided search tunes one model at a time; this grid varies {sorted(models)}: "
            "use --strategy quick or brute, or --only one model"
        )
    (model,) = models
    scored = []
    for point in _points(grid):
        config = config_at(grid, point, model, profile.config)
        try:
            rate = Predictor(profile, config, requests=6000).capacity_pooled(slo_s)
        except PerfError:
            rate = 0.0
        scored.append((point, rate))
    return sorted(scored, key=lambda pr: -pr[1])


def _points(grid: Grid) -> list[Point]:
    import itertools

    every = itertools.product(*(range(len(d.values)) for d in grid.dimensions))
    return [p for p in every if grid.valid(p)]


def guided(
    grid: Grid,
    evaluate: Callable[[Point], tuple[int, float]],
    ranking: list[tuple[Point, float]],
    progress: Callable[[str], None] = lambda _: None,
) -> list[Point]:
    """Measure the points ``ranking`` puts first (SHARE of the grid, at least 2)."""
    chosen = [p for p, _ in ranking[: max(2, math.ceil(SHARE * len(ranking)))]]
    for point in chosen:
        progress(f"guided: {grid.settings(point)} predicted {dict(ranking)[point]:.0f} infer/s")
        evaluate(point)
    return chosen
