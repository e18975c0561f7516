"""The generator's statistics on synthetic latencies with known answers: percentiles, the last
three windows, --max-trials, --percentile and -b. Only the network is replaced: each request
"completes" at once with a latency the test chooses; the windows, stability rule and the row
are the generator's own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tritonpipe.client.checks import ModelInfo
from tritonpipe.perf.generator import ProfileOptions, Profiler, _Done
from tritonpipe.perf.server_stats import ServerTimes, Snapshot
from tritonpipe.perf.stability import is_stable, within

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
