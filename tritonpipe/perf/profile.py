"""One entry point for both engines: run, write perf_analyzer-format CSVs, summarise."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from tritonpipe.errors import PerfError
from tritonpipe.perf.generator import LevelResult, ProfileOptions, Profiler
from tritonpipe.perf.results_csv import write_csv
from tritonpipe.perf.step_metrics import steps_csv, write_steps


def parse_range(text: str, integer: bool) -> tuple[float, ...]:
    """perf_analyzer's ``start:end:step`` (end and step optional)."""
    parts = text.split(":")
    try:
        numbers = [int(p) if integer else float(p) for p in parts]
    except ValueError:
        raise PerfError(f"range {text!r}: expected start[:end[:step]] numbers") from None
    if not 1 <= len(numbers) <= 3 or numbers[0] <= 0:
        raise PerfError(f"range {text!r}: expected start[:end[:step]] with start > 0")
    start = numbers[0]
    end = numbers[1] if len(numbers) > 1 else start
    step = numbers[2] if len(numbers) > 2 else 1
    if end < start or step <= 0:
        raise PerfError(f"range {text!r}: end must be >= start and step > 0")
    loads = []
    value = start
    while value <= end + 1e-9:
        loads.append(value)
        value += step
    return tuple(loads)


def composing_csv(path: Path, model: str) -> Path:
    return path.with_name(f"{path.stem}_{model}{path.suffix}")


def profile(
    options: ProfileOptions,
    csv: Path | None,
    engine: str = "tritonpipe",
    progress: Callable[[str], None] = lambda _: None,
) -> list[LevelResult]:
    """Profile with ``engine`` and write ``csv`` (plus one CSV per composing model, and
    ``<file>_steps.csv`` with per-step times when the model reports them)."""
    if engine == "perf_analyzer":
        from tritonpipe.perf import perf_analyzer

        # perf_analyzer always writes a CSV; without -f it goes to a temporary folder, never
        # into the current one.
        with tempfile.TemporaryDirectory(prefix="tritonpipe-pa-") as tmp:
            results = perf_analyzer.run(options, csv or Path(tmp) / "perf_analyzer.csv", progress)
    elif engine == "tritonpipe":
        results = asyncio.run(Profiler(options).run(progress))
    else:
        raise PerfError(f"--engine {engine!r}: tritonpipe or perf_analyzer")
    if csv is not None:
        write_csv(csv, [r.row for r in results], options.mode)
        for model in results[0].composing if results else ():
            write_csv(
                composing_csv(csv, model), [r.composing[model] for r in results], options.mode
            )
        if any(r.steps for r in results):
            write_steps(steps_csv(csv), options.mode, [(r.row.load, r.steps) for r in results])
    return results


def summary(results: list[LevelResult], mode: str) -> str:
    """The console table: load, throughput, percentiles and server breakdown (microseconds)."""
    load = "Concurrency" if mode == "concurrency" else "Rate"
    lines = [
        f"{load:>11} {'infer/s':>10} {'p50':>8} {'p90':>8} {'p99':>8} {'queue':>7} "
        f"{'compute':>8} {'network':>8} {'errors':>7} stable"
    ]
    for r in results:
        row = r.row
        compute = row.server_input_us + row.server_infer_us + row.server_output_us
        lines.append(
            f"{row.load:>11g} {row.throughput:>10.1f} {row.p50_us:>8} {row.p90_us:>8} "
            f"{row.p99_us:>8} {row.server_queue_us:>7} {compute:>8} {row.network_us:>8} "
            f"{r.errors:>7} {'yes' if r.stable else 'NO'}"
        )
    return "\n".join(lines)
