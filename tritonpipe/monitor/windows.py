"""Windows over prediction logs: by time (``1d``, ``1h``, pandas offsets) or by count (``5000``).
Each window is a slice of the time-sorted frame, found with searchsorted (no row loop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonpipe.errors import MonitorError


@dataclass(frozen=True)
class Window:
    start: Any  # pandas Timestamp
    end: Any
    begin: int  # row slice [begin, stop) of the sorted frame
    stop: int

    @property
    def label(self) -> str:
        return str(self.start)[:19]


def windows(frame: Any, every: str) -> list[Window]:
    """Windows of ``frame`` (sorted by ``timestamp``): time buckets, or ``every`` rows each."""
    import pandas as pd

    if not len(frame):
        return []
    times = frame["timestamp"]
    if every.isdigit():
        size = int(every)
        if size <= 0:
            raise MonitorError("--window: a count must be positive")
        starts = np.arange(0, len(frame), size)
        return [
            Window(times.iloc[b], times.iloc[min(b + size, len(frame)) - 1], int(b),
                   int(min(b + size, len(frame))))
            for b in starts
        ]  # fmt: skip
    try:
        step = pd.Timedelta(every)
    except ValueError:
        raise MonitorError(
            f"--window {every!r}: use a duration (1d, 6h, 30min) or a row count"
        ) from None
    if step <= pd.Timedelta(0):
        raise MonitorError("--window: a duration must be positive")
    first = times.iloc[0].floor(step)
    edges = pd.date_range(first, times.iloc[-1] + step, freq=step)
    cuts = np.searchsorted(
        times.to_numpy(dtype="datetime64[ns]"), edges.to_numpy(dtype="datetime64[ns]"), side="left"
    )
    return [
        Window(edges[i], edges[i + 1], int(cuts[i]), int(cuts[i + 1]))
        for i in range(len(edges) - 1)
        if cuts[i + 1] > cuts[i]
    ]
