"""`tritonpipe perf sweep`: measure serving candidates on a running server and keep every
measurement in a results file (JSON lines), so an interrupted sweep resumes where it stopped.

Each candidate is applied by reloading its models with a config override, then measured with
the project's generator at rising concurrency (1, 2, 4, ...) until the latency constraint
breaks or throughput stops growing."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tritonpipe.capacity.candidates import Grid, ServerConfigs, Settings, describe, key
from tritonpipe.capacity.closed_loop import next_between
from tritonpipe.errors import PerfError
from tritonpipe.perf.generator import ProfileOptions, Profiler
from tritonpipe.perf.results_csv import ResultRow

Score = tuple[int, float]  # (meets the constraint, value): larger is better
REFINE = 2  # bisection levels between the last concurrency that met the SLO and the next


@dataclass(frozen=True, kw_only=True)
class Objective:
    """Maximise throughput subject to p99 <= slo_p99_ms, or (``min_throughput`` given)
    minimise p99 subject to throughput >= min_throughput."""

    slo_p99_ms: float | None = None
    min_throughput: float | None = None

    def __post_init__(self) -> None:
        if (self.slo_p99_ms is None) == (self.min_throughput is None):
            raise PerfError("give one constraint: --slo-p99-ms or --min-throughput")
        if (self.slo_p99_ms or 1) <= 0 or (self.min_throughput or 1) <= 0:
            raise PerfError("--slo-p99-ms and --min-throughput must be > 0")

    def meets(self, row: ResultRow) -> bool:
        if self.slo_p99_ms is not None:
            return row.p99_us <= self.slo_p99_ms * 1000
        return row.throughput >= (self.min_throughput or 0)

    def describe(self) -> str:
        if self.slo_p99_ms is not None:
            return f"max throughput at p99 <= {self.slo_p99_ms:g} ms"
        return f"min p99 at >= {self.min_throughput:g} infer/s"


@dataclass(frozen=True, kw_only=True)
class Measurement:
    settings: Settings
    levels: list[ResultRow] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def best(self, objective: Objective) -> ResultRow | None:
        """The level that scores best among those meeting the constraint."""
        ok = [r for r in self.levels if objective.meets(r)]
        if not ok:
            return None
        if objective.slo_p99_ms is not None:
            return max(ok, key=lambda r: r.throughput)
        return min(ok, key=lambda r: r.p99_us)

    def score(self, objective: Objective) -> Score:
        best = self.best(objective)
        if best is not None:
            value = best.throughput if objective.slo_p99_ms is not None else -best.p99_us
            return 1, float(value)
        if not self.levels:
            return 0, float("-inf")
        if objective.slo_p99_ms is not None:  # closer to the SLO is better
            return 0, -float(min(r.p99_us for r in self.levels))
        return 0, float(max(r.throughput for r in self.levels))

    def to_json(self) -> dict[str, Any]:
        return {
            "key": key(self.settings),
            "settings": self.settings,
            "levels": [asdict(r) for r in self.levels],
            "error": self.error,
            "seconds": round(self.seconds, 2),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        return cls(
            settings=data["settings"],
            levels=[ResultRow(**r) for r in data["levels"]],
            error=data.get("error"),
            seconds=data.get("seconds", 0.0),
        )


@dataclass(frozen=True, kw_only=True)
class MeasureOptions:
    target: str
    url: str  # host:port
    protocol: str = "grpc"
    concurrencies: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    window_ms: int = 1000
    max_trials: int = 5
    stability_percentage: float = 25.0
    input_data: str = "random"
    transport: str = "raw"

    def header(self) -> dict[str, Any]:
        """What must match for a results file's measurements to be reused."""
        return {"target": self.target, "protocol": self.protocol, "window_ms": self.window_ms}


def measure_levels(
    options: MeasureOptions, objective: Objective, progress: Callable[[str], None]
) -> list[ResultRow]:
    """Rising concurrency until the latency constraint breaks at two levels in a row (one
    p99 on a shared machine can be an outlier), the throughput constraint is met, requests
    fail, or two steps in a row add less than 5% throughput. Under a latency constraint, up to
    REFINE more levels then bisect between the largest concurrency that met it and the next
    that broke it (closed_loop.next_between), so a candidate is not scored at the power of two
    below its capacity; the rows come back in order of concurrency."""
    rows: list[ResultRow] = []

    def level(c: int) -> tuple[ResultRow, int]:
        profile = ProfileOptions(
            model=options.target,
            url=options.url,
            protocol=options.protocol,
            loads=(c,),
            measurement_interval_ms=options.window_ms,
            max_trials=options.max_trials,
            stability_percentage=options.stability_percentage,
            input_data=options.input_data,
            transport=options.transport,
        )
        result = asyncio.run(Profiler(profile).run())[0]
        row = result.row
        progress(
            f"    c={c}: {row.throughput:.0f} infer/s, p99 {row.p99_us / 1000:.2f} ms"
            + (f", {result.errors} errors" if result.errors else "")
        )
        return row, result.errors

    flat = broken = 0
    latency = objective.slo_p99_ms is not None
    failed = False
    for c in options.concurrencies:
        row, errors = level(c)
        if errors:
            failed = True
            break
        gain = row.throughput / max(r.throughput for r in rows) if rows else 2.0
        rows.append(row)
        flat = flat + 1 if gain < 1.05 else 0
        broken = broken + 1 if latency and not objective.meets(row) else 0
        reached = not latency and objective.meets(row)
        if broken >= 2 or reached or flat >= 2:
            break
    for _ in range(REFINE if latency and not failed else 0):
        more = next_between({int(r.load): objective.meets(r) for r in rows})
        if more is None:
            break
        row, errors = level(more)
        if errors:
            break
        rows.append(row)
    return sorted(rows, key=lambda r: r.load)


class ResultsFile:
    """One JSON line per measured candidate after a header line; appended and flushed as each
    candidate finishes, so a killed sweep loses at most the candidate it was measuring."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.done: dict[str, Measurement] = {}
        if path.is_file() and path.stat().st_size:
            lines = path.read_text().splitlines()
            if lines and not lines[-1].endswith("}"):  # cut short by a kill mid-write
                lines.pop()
                path.write_text("".join(f"{line}\n" for line in lines))
            try:
                found = json.loads(lines[0]).get("sweep")
                records = [json.loads(line) for line in lines[1:] if line.strip()]
            except (ValueError, AttributeError, IndexError) as exc:
                raise PerfError(f"{path}: not a sweep results file ({exc})") from None
            if found != header:
                raise PerfError(
                    f"{path}: holds a different sweep ({found}); this one is {header}. "
                    "Use another --results file."
                )
            for record in records:
                self.done[record["key"]] = Measurement.from_json(record)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"sweep": header})

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def add(self, measurement: Measurement) -> None:
        self.done[key(measurement.settings)] = measurement
        self._append(measurement.to_json())


class Sweep:
    """Measures candidates of ``grid`` on demand; each is measured once, ever (the results
    file remembers). ``evaluate(point)`` is what the search strategies call."""

    def __init__(
        self,
        grid: Grid,
        objective: Objective,
        options: MeasureOptions,
        configs: ServerConfigs,
        results: ResultsFile,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.grid, self.objective, self.options = grid, objective, options
        self.configs, self.results, self.progress = configs, results, progress
        self.visited: list[str] = []  # keys in the order the search asked for them
        self.measured = 0  # new measurements in this run (the rest came from the file)

    def best(self) -> Measurement | None:
        done = [self.results.done[k] for k in self.visited if k in self.results.done]
        return max(done, key=lambda m: m.score(self.objective), default=None)

    def evaluate(self, point: tuple[int, ...]) -> Score:
        settings = self.grid.settings(point)
        name = key(settings)
        if name not in self.visited:
            self.visited.append(name)
        if name in self.results.done:
            return self.results.done[name].score(self.objective)
        self.measured += 1
        self.progress(
            f"[{len(self.visited)}] {describe(settings)} (best so far: {self._best_text()})"
        )
        start = time.perf_counter()
        try:
            self.configs.apply(self.options.target, settings)
            levels = measure_levels(self.options, self.objective, self.progress)
            measurement = Measurement(
                settings=settings, levels=levels, seconds=time.perf_counter() - start
            )
        except PerfError as exc:
            self.progress(f"    failed: {exc}")
            measurement = Measurement(
                settings=settings, error=str(exc), seconds=time.perf_counter() - start
            )
        self.results.add(measurement)
        return measurement.score(self.objective)

    def _best_text(self) -> str:
        best = self.best()
        row = best.best(self.objective) if best else None
        if best is None or row is None:
            return "none yet"
        return (
            f"{describe(best.settings)}: {row.throughput:.0f} infer/s, "
            f"p99 {row.p99_us / 1000:.2f} ms"
        )
