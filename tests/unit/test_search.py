import itertools

from tritonpipe.capacity import search
from tritonpipe.capacity.candidates import edit_config, key, make_grid, served

GRID = make_grid(
    ["m"],
    {
        "count": [1, 2, 3, 4],
        "max_batch_size": [4, 16, 64],
        "max_queue_delay_us": [0, 100, 500, 2000],
    },
)


def _peaked(best: tuple[int, ...]):  # a unimodal score with its maximum at ``best``
    calls: dict[tuple[int, ...], tuple[int, float]] = {}

    def evaluate(point: tuple[int, ...]) -> tuple[int, float]:
        if point not in calls:
            calls[point] = (
                1,
                1000.0 - 100 * sum(abs(a - b) for a, b in zip(point, best, strict=True)),
            )
        return calls[point]

    return evaluate, calls


def test_brute_measures_every_point() -> None:
    evaluate, calls = _peaked((1, 1, 1))
    search.brute(GRID, evaluate)
    assert len(calls) == GRID.size() == 48


def test_quick_finds_the_peak_with_few_measurements() -> None:
    for best in itertools.product(range(4), range(3), range(4)):
        evaluate, calls = _peaked(best)
        search.quick(GRID, evaluate, (1, 2, 1))
        assert max(calls.values()) == (1, 1000.0), best
        assert len(calls) <= 0.3 * GRID.size(), (best, len(calls))


def test_quick_prefers_points_that_meet_the_constraint() -> None:
    def evaluate(point: tuple[int, ...]) -> tuple[int, float]:
        return (1, 10.0) if point[0] == 3 else (0, -float(10 - point[0]))

    visited: list[tuple[int, ...]] = []
    search.quick(GRID, lambda p: visited.append(p) or evaluate(p), (0, 0, 0))
    assert (3, 0, 0) in visited


def test_nearest_starts_at_the_served_config() -> None:
    assert search.nearest(
        GRID, {"m": {"count": 2, "max_batch_size": 64, "max_queue_delay_us": 200}}
    ) == (1, 2, 1)


def test_edit_config_and_keys() -> None:
    config = {
        "name": "m",
        "max_batch_size": 64,
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
        "dynamic_batching": {"preferred_batch_size": [16, 32], "max_queue_delay_microseconds": 500},
    }
    edited = edit_config(config, {"count": 1, "max_batch_size": 8, "max_queue_delay_us": 0})
    assert served(edited) == {
        "count": 1,
        "max_batch_size": 8,
        "max_queue_delay_us": 0,
        "preferred_batch_size": 0,
    }
    assert edited["dynamic_batching"]["preferred_batch_size"] == []  # 16 and 32 exceed 8
    assert config["max_batch_size"] == 64  # the original is untouched
    assert key({"b": {"y": 1, "x": 2}, "a": {}}) == '{"a": {}, "b": {"x": 2, "y": 1}}'
