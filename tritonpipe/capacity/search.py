"""Search strategies over a grid: ``brute`` measures every point; ``quick`` climbs one knob at
a time from a starting point and stops when no single step improves the score; ``guided``
measures the points a simulation of the profiled model ranks first (tritonpipe.capacity.guide).

A point is one value index per dimension; ``evaluate`` returns a score (larger is better) and
is expected to remember what it measured, so revisiting a point is free."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from tritonpipe.capacity.candidates import Grid
from tritonpipe.errors import PerfError

Point = tuple[int, ...]
Evaluate = Callable[[Point], tuple[int, float]]
STRATEGIES = ("brute", "quick", "guided")
# A step must beat the current score by this factor: measurements on a shared machine are
# noisy, and chasing noise costs measurements without finding better configs.
MARGIN = 0.03


def brute(grid: Grid, evaluate: Evaluate) -> None:
    for point in itertools.product(*(range(len(d.values)) for d in grid.dimensions)):
        if grid.valid(point):
            evaluate(point)


def _better(new: tuple[int, float], old: tuple[int, float]) -> bool:
    if new[0] != old[0]:
        return new[0] > old[0]
    return new[1] > old[1] + abs(old[1]) * MARGIN


def quick(grid: Grid, evaluate: Evaluate, start: Point) -> None:
    """Coordinate hill climbing: for each knob in turn, keep stepping in the direction that
    improves (up first, then down); repeat the round until a round changes nothing."""
    current, score = start, evaluate(start)
    changed = True
    while changed:
        changed = False
        for d, dimension in enumerate(grid.dimensions):
            for step in (1, -1):
                moved = False
                while 0 <= current[d] + step < len(dimension.values):
                    point = current[:d] + (current[d] + step,) + current[d + 1 :]
                    if not grid.valid(point):
                        break
                    new = evaluate(point)
                    if not _better(new, score):
                        break
                    current, score, moved, changed = point, new, True, True
                if moved:
                    break


def nearest(grid: Grid, values: dict[str, dict[str, int]]) -> Point:
    """The grid point closest to ``values`` (model -> knob -> value), e.g. the served config;
    knobs it does not mention start at their smallest value."""
    point = []
    for d in grid.dimensions:
        have = values.get(d.model, {}).get(d.knob)
        if have is None:
            point.append(0)
        else:
            point.append(min(range(len(d.values)), key=lambda i: abs(d.values[i] - have)))
    start = tuple(point)
    if grid.valid(start):
        return start
    return next(
        p
        for p in itertools.product(*(range(len(d.values)) for d in grid.dimensions))
        if grid.valid(p)
    )


def run(
    strategy: str,
    grid: Grid,
    evaluate: Evaluate,
    start: Point,
    ranking: list[tuple[Point, float]] | None = None,
) -> None:
    if strategy == "brute":
        brute(grid, evaluate)
    elif strategy == "quick":
        quick(grid, evaluate, start)
    elif strategy == "guided":
        from tritonpipe.capacity.guide import guided

        if ranking is None:
            raise PerfError("the guided search needs a ranking from a service profile")
        guided(grid, evaluate, ranking)
    else:
        raise PerfError(f"--strategy {strategy!r}: {' or '.join(STRATEGIES)}")
