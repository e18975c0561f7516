"""A one-line progress bar on stderr (rows, rows/s, ETA) and the end-of-run summary."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass(kw_only=True)
class Summary:
    """What one run did: units committed here or earlier, rows scored and rejected."""

    run_id: str
    engine: str
    units: int
    skipped: int
    committed: int
    rows: int
    rejected: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        return (
            f"run {self.run_id} ({self.engine}): {self.committed} units committed, "
            f"{self.skipped} already done of {self.units}; {self.rows:,} rows scored, "
            f"{self.rejected:,} rejected, {self.seconds:.1f} s, {self.rows_per_s:,.0f} rows/s"
        )


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Redraws at most every ``every_s``; silent when ``enabled`` is false."""

    def __init__(
        self,
        total_rows: int,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        every_s: float = 0.5,
    ) -> None:
        self.total = total_rows
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.every_s or self.done >= self.total):
            self._last = now
            self.stream.write("\r" + self.line(now - self.start))
            self.stream.flush()

    def line(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        return (
            f"[{bar:<30}] {self.done:,}/{self.total:,} rows  {rate:,.0f} rows/s  ETA {_clock(eta)}"
        )

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
