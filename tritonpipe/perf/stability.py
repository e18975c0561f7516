"""perf_analyzer's stability rule: the last three windows' throughput and latency each lie
within the stability percentage of their mean."""

from __future__ import annotations

from collections.abc import Sequence

WINDOWS = 3


def within(values: Sequence[float], percent: float) -> bool:
    if len(values) < WINDOWS:
        return False
    recent = values[-WINDOWS:]
    mean = sum(recent) / WINDOWS
    if mean == 0:
        return all(v == 0 for v in recent)
    return all(abs(v - mean) <= mean * percent / 100 for v in recent)


def is_stable(throughputs: Sequence[float], latencies: Sequence[float], percent: float) -> bool:
    """True when both series' last three windows are within ``percent`` of their means."""
    return within(throughputs, percent) and within(latencies, percent)
