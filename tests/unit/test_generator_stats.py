"""The generator's statistics on synthetic latencies with known answers: percentiles, the last
three windows, --max-trials, --percentile and -b. Only the network is replaced: each request
"completes" at once with a latency the test chooses; the windows, stability rule and the row
are the generator's own."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from tritonpipe.client.checks import ModelInfo
from tritonpipe.errors import PerfError
from tritonpipe.perf.generator import ProfileOptions, Profiler, _Done, _server_row
from tritonpipe.perf.server_stats import ModelCounters, ServerTimes, Snapshot
from tritonpipe.perf.stability import is_stable, within
from tritonpipe.perf.step_metrics import Counters

INFO = ModelInfo.from_config("m", {"max_batch_size": 8, "input": [], "output": []})


class Synthetic(Profiler):
    """Requests finish after 1 ms with ``latency(window, n)`` seconds; ``windows`` counts the
    statistics snapshots (one before the first window, one after each)."""

    def __init__(self, latency: Callable[[int, int], float], **options: Any) -> None:
        super().__init__(ProfileOptions(model="m", url="http://127.0.0.1:1", **options))
        self.latency = latency
        self.windows = 0
        self.sent = 0

    async def _snapshot(self, client: Any) -> Snapshot:
        self.windows += 1
        return {}

    async def _one(self, client: Any, info: ModelInfo, request: Any, done: list[_Done]) -> None:
        await asyncio.sleep(0.001)
        self.sent += 1
        done.append(_Done(self.latency(self.windows, self.sent), 0.0, 0.0, None))

    def level(self, load: float = 1) -> Any:
        return asyncio.run(self._level(None, INFO, [None], [], load, lambda _: None))


def test_reports_the_last_three_windows_and_runs_max_trials() -> None:
    # Window k's requests all take k ms; with 0% stability nothing is stable.
    profiler = Synthetic(
        lambda window, _: window / 1000,
        max_trials=5,
        stability_percentage=0,
        measurement_interval_ms=100,
    )
    result = profiler.level()
    assert not result.stable
    assert profiler.windows == 6  # the snapshot before, then one per trial: exactly 5 trials
    # Windows 3, 4 and 5 hold about as many requests each: the median is 4 ms, not 3.
    assert result.row.p50_us == 4000
    assert result.row.p99_us == 5000 and result.row.p90_us == 5000


def test_stops_after_three_stable_windows() -> None:
    profiler = Synthetic(
        lambda *_: 0.002, max_trials=10, stability_percentage=50, measurement_interval_ms=100
    )
    result = profiler.level()
    assert result.stable and profiler.windows == 4


def _outliers(window: int, n: int) -> float:
    """1 ms, except every 10th request: 10**window ms. The median is steady, the mean is not."""
    return 10.0**window / 1000 if n % 10 == 0 else 0.001


def test_percentile_option_stabilises_on_that_percentile() -> None:
    on_median = Synthetic(
        _outliers, percentile=50, max_trials=6, stability_percentage=40, measurement_interval_ms=100
    )
    assert on_median.level().stable and on_median.windows == 4
    on_mean = Synthetic(
        _outliers, max_trials=6, stability_percentage=40, measurement_interval_ms=100
    )
    assert not on_mean.level().stable and on_mean.windows == 7


@pytest.mark.parametrize("batch_size", [1, 4])
def test_row_percentiles_throughput_and_network_from_known_latencies(batch_size: int) -> None:
    profiler = Synthetic(lambda *_: 0.0, batch_size=batch_size)
    ok = [_Done(ms / 1000, 0.0001, 0.0002, None) for ms in range(1, 101)]  # 1..100 ms
    server = ServerTimes(100, 100, 100, 1000, 2000, 3000, 4000)
    row = profiler._row(7, ok, 2.0, server)
    assert row.load == 7
    # numpy's linear interpolation over 1..100 ms: p50 = 50.5 ms, p90 = 90.1, p95 = 95.05, ...
    assert row.p50_us == pytest.approx(50500, abs=1)
    assert row.p90_us == pytest.approx(90100, abs=1)
    assert row.p95_us == pytest.approx(95050, abs=1)
    assert row.p99_us == pytest.approx(99010, abs=1)
    assert row.throughput == 100 * batch_size / 2.0  # inferences (rows) per second
    assert (row.client_send_us, row.client_recv_us) == (100, 200)
    assert (row.server_queue_us, row.server_input_us) == (1000, 2000)
    assert (row.server_infer_us, row.server_output_us) == (3000, 4000)
    # mean 50.5 ms, less send, recv and the 10 ms the server spent
    assert row.network_us == 50500 - 100 - 200 - 10000


def test_stability_latency_is_the_mean_or_the_percentile() -> None:
    ok = [_Done(ms / 1000, 0, 0, None) for ms in (1, 2, 3, 10)]
    assert Synthetic(lambda *_: 0.0)._stability_latency(ok) == pytest.approx(0.004)
    p = Synthetic(lambda *_: 0.0, percentile=50)._stability_latency(ok)
    assert p == pytest.approx(0.0025)
    assert Synthetic(lambda *_: 0.0)._stability_latency([]) == 0.0


def test_stability_rule_at_its_boundary() -> None:
    assert within([90, 100, 110], 10)  # each exactly 10% from the mean 100
    assert not within([89, 100, 111], 10)
    assert not within([100, 100], 10)  # fewer than three windows
    assert within([5, 90, 100, 110], 10)  # only the last three count
    assert within([0, 0, 0], 10) and not within([0, 0, 1], 10) and not within([1, -1, 0], 10)
    assert is_stable([90, 100, 110], [1, 1, 1], 10)
    assert not is_stable([90, 100, 110], [1, 1, 2], 10)
    assert not is_stable([1, 1, 3], [90, 100, 110], 10)


class Windows(Synthetic):
    """Synthetic, plus statistics and step counters that grow by a known amount per window:
    window k's requests cost k ms in the queue, and step "s" k executions of k us each."""

    def __init__(self, latency: Callable[[int, int], float], **options: Any) -> None:
        super().__init__(latency, **options)
        self.scraped: list[str] = []

    async def _snapshot(self, client: Any) -> Snapshot:
        k = self.windows  # windows before this snapshot
        self.windows += 1
        requests = 10 * k
        queue_ns = sum(10 * w * w * 1_000_000 for w in range(1, k + 1))  # 10 requests x w ms
        counters = ModelCounters(requests, requests, requests, {**ZERO_NS, "queue": queue_ns})
        return {"m": counters, "a": counters}  # "a": the composing model of an ensemble

    async def _steps(self, model: str, progress: Callable[[str], None]) -> Counters:
        progress(f"scrape {model}")
        k = len(self.scraped)
        self.scraped.append(model)
        executions = sum(range(1, k + 1))
        us = sum(w * w for w in range(1, k + 1))
        return {"s": (float(executions), float(executions), float(us))}

    def run_level(self, lines: list[str], composing: list[str]) -> Any:
        return asyncio.run(self._level(None, INFO, [None], composing, 1, lines.append))


ZERO_NS = {"queue": 0, "compute_input": 0, "compute_infer": 0, "compute_output": 0}


@pytest.mark.parametrize("composing", [[], ["a"]])
@pytest.mark.parametrize("trials", [4, 5])
def test_server_columns_and_step_rows_come_from_the_last_three_windows(
    trials: int, composing: list[str]
) -> None:
    # Unstable windows: the row is the last three, e.g. windows 3..5, whose queue time averages
    # (9+16+25)x10 ms over 30 requests; the step rows are the executions of those windows too.
    profiler = Windows(
        lambda *_: 0.001, max_trials=trials, stability_percentage=0, measurement_interval_ms=100
    )
    profiler.MIN_STEP_SPAN_S = 0.0  # the windows' own scrapes (the hold: the test below)
    lines: list[str] = []
    result = profiler.run_level(lines, composing)
    assert profiler.windows == trials + 1 and profiler.scraped == ["m"] * (trials + 1)
    assert [line for line in lines if line.startswith("scrape")] == ["scrape m"] * (trials + 1)
    last = range(trials - 2, trials + 1)
    squares = sum(w * w for w in last)
    assert result.row.server_queue_us == round(10 * squares * 1000 / 30)
    for part in result.composing.values():  # an ensemble's composing model: the same windows
        assert part.server_queue_us == round(10 * squares * 1000 / 30)
        assert part.throughput == pytest.approx(30 / 0.3, rel=0.3)
    assert list(result.composing) == composing
    (step,) = result.steps
    assert step.step == "s"
    assert step.requests_per_execution == 1.0
    assert step.us_per_execution == pytest.approx(squares / sum(last))
    seconds = step.executions_per_s and sum(last) / step.executions_per_s
    assert seconds == pytest.approx(0.3, rel=0.3)  # three 100 ms windows


def test_windows_shorter_than_the_step_flush_hold_the_load_for_one_more_scrape() -> None:
    """Three 100 ms windows are shorter than the runtime's step-counter push (every second):
    the load stays on until the scrapes span MIN_STEP_SPAN_S, one more scrape ends the rows,
    and their rate is over that longer span."""
    profiler = Windows(
        lambda *_: 0.001, max_trials=3, stability_percentage=100, measurement_interval_ms=100
    )
    profiler.MIN_STEP_SPAN_S = 0.6
    result = profiler.run_level([], [])
    assert profiler.scraped == ["m"] * 5  # before the windows, after each of 3, and the hold's
    (step,) = result.steps
    assert step.us_per_execution == pytest.approx((1 + 4 + 9 + 16) / (1 + 2 + 3 + 4))
    seconds = sum(range(1, 5)) / step.executions_per_s
    assert seconds == pytest.approx(0.6, rel=0.3)


class LateSteps(Synthetic):
    """The model's step counters appear only from the third scrape on (after its first run)."""

    def __init__(self) -> None:
        super().__init__(
            lambda *_: 0.001, max_trials=3, stability_percentage=100, measurement_interval_ms=50
        )
        self.scrapes = 0

    async def _steps(self, model: str, progress: Callable[[str], None]) -> Counters:
        self.scrapes += 1
        return {"s": (5.0, 10.0, 50.0)} if self.scrapes >= 4 else {}


def test_step_counters_that_appear_late_are_counted_from_zero() -> None:
    (step,) = LateSteps().level().steps
    assert (step.requests_per_execution, step.us_per_execution) == (2.0, 10.0)


def test_window_line_counts_rows_and_microseconds() -> None:
    # Every request reports exactly 1 s; batch size 4: each request counts 4 inferences.
    lines: list[str] = []
    profiler = Synthetic(
        lambda *_: 1.0,
        batch_size=4,
        max_trials=3,
        stability_percentage=100,
        measurement_interval_ms=100,
    )
    asyncio.run(profiler._level(None, INFO, [None], [], 1, lines.append))
    first = re.fullmatch(
        r"  concurrency 1: window 1: ([\d.]+) infer/s, latency (\d+) us, 0 errors", lines[0]
    )
    assert first is not None and first.group(2) == "1000000"
    # ~1 ms per request (the sleep), 100 ms window: ~100 requests x 4 rows.
    assert 4 * 20 / 0.1 <= float(first.group(1)) <= 4 * 110 / 0.1


def test_row_converts_seconds_to_microseconds_exactly() -> None:
    profiler = Synthetic(lambda *_: 0.0)
    ok = [_Done(10.0, 1.0, 2.0, None)]
    row = profiler._row(1, ok, 1.0, ServerTimes(1, 1, 1, 0, 0, 0, 0))
    assert (row.p50_us, row.p99_us) == (10_000_000, 10_000_000)
    assert (row.client_send_us, row.client_recv_us, row.network_us) == (
        1_000_000,
        2_000_000,
        7_000_000,
    )
    # Three rows over 7 s: 0.429 per second, to three decimals.
    assert profiler._row(1, ok * 3, 7.0, ServerTimes(1, 1, 1, 0, 0, 0, 0)).throughput == 0.429
    # A server slower than the client saw (clocks apart): no negative network time.
    slow = ServerTimes(1, 1, 1, 0, 0, 20_000_000, 0)
    assert profiler._row(1, ok, 1.0, slow).network_us == 0


def test_composing_row_throughput_keeps_three_decimals() -> None:
    row = _server_row(2, ServerTimes(1, 1, 1, 5, 6, 7, 8), 3.0)
    assert row.throughput == 0.333 and row.load == 2
    assert (row.server_queue_us, row.server_input_us, row.server_infer_us) == (5, 6, 7)
    assert row.server_output_us == 8


class Failing(Synthetic):
    """Request n fails with "boom n" when ``fails(n)``."""

    def __init__(self, fails: Callable[[int], bool], **options: Any) -> None:
        super().__init__(lambda *_: 0.001, **options)
        self.fails = fails

    async def _one(self, client: Any, info: ModelInfo, request: Any, done: list[_Done]) -> None:
        await asyncio.sleep(0.001)
        self.sent += 1
        error = f"boom {self.sent}" if self.fails(self.sent) else None
        done.append(_Done(0.001, 0.0, 0.0, error))


def test_first_error_is_the_first_failed_request_of_the_reported_windows() -> None:
    lines: list[str] = []
    profiler = Failing(
        lambda n: n <= 2, max_trials=3, stability_percentage=100, measurement_interval_ms=50
    )
    result = asyncio.run(profiler._level(None, INFO, [None], [], 1, lines.append))
    assert result.first_error == "boom 1" and result.errors == 2
    assert lines[0].endswith(", 2 errors")  # the window starts at the first request


def test_every_request_failing_names_the_first_of_them() -> None:
    profiler = Failing(
        lambda n: True, max_trials=3, stability_percentage=100, measurement_interval_ms=50
    )
    with pytest.raises(
        PerfError, match="^model 'm' at concurrency 1: every request failed; first error: boom 1$"
    ):
        profiler.level()


def test_windows_last_the_measurement_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real = asyncio.sleep

    async def sleep(seconds: float, *args: Any) -> Any:
        slept.append(seconds)
        return await real(seconds, *args)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    Synthetic(lambda *_: 0.001, max_trials=3, measurement_interval_ms=30).level()
    assert slept.count(0.03) == 3


class Raising(Synthetic):
    async def _one(self, client: Any, info: ModelInfo, request: Any, done: list[_Done]) -> None:
        await asyncio.sleep(0.001)
        done.append(_Done(0.001, 0.0, 0.0, None))
        raise RuntimeError("a worker died")


def test_a_driver_dying_does_not_abort_the_level() -> None:
    result = Raising(
        lambda *_: 0.0, max_trials=3, stability_percentage=100, measurement_interval_ms=50
    ).level(load=2)
    assert result.requests >= 1 and result.errors == 0


def test_request_rate_waits_for_requests_in_flight_and_reports_no_loop_errors() -> None:
    problems: list[dict[str, Any]] = []

    class Slow(Synthetic):
        async def _one(self, client: Any, info: ModelInfo, request: Any, done: list[_Done]) -> None:
            await asyncio.sleep(0.03)
            done.append(_Done(0.03, 0.0, 0.0, None))

    async def level() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: problems.append(ctx))
        profiler = Slow(
            lambda *_: 0.0,
            mode="request_rate",
            max_trials=3,
            stability_percentage=100,
            measurement_interval_ms=50,
        )
        await profiler._level(None, INFO, [None], [], 200, lambda _: None)
        return len(asyncio.all_tasks())

    assert asyncio.run(level()) == 1  # only this coroutine: every request has finished
    assert problems == []
