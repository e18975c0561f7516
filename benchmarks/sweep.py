"""Sweep benchmark: brute force against the quick search on one grid, in one run.

    python -m benchmarks.sweep --out benchmarks/results/sweep.md

Serves the digits pipeline's fused model (``digits``) built from examples/digits/pipeline.yaml
with explicit model control, measures the config `build` writes (the defaults), then sweeps the
same grid twice, each with its own results file: every point (brute), then hill climbing from
the defaults (quick). Prints for each: configs measured, wall time, best throughput under the
SLO; and the targets (quick >= 95% of brute's best with <= 30% of its measurements; the best
>= 1.5x the defaults)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tritonpipe.capacity import search
from tritonpipe.capacity.candidates import ServerConfigs, describe, key, make_grid, served
from tritonpipe.capacity.session import png_input_data, serving
from tritonpipe.capacity.sweep import (
    Measurement,
    MeasureOptions,
    Objective,
    ResultsFile,
    Sweep,
    measure_levels,
)
from tritonpipe.perf.machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
# The config `build` writes for `digits` (2 instances, batches up to 64, 200 us) is a grid point.
GRID = {"count": [1, 2, 3], "max_batch_size": [4, 16, 64], "max_queue_delay_us": [0, 200, 2000]}
ROUNDS = 3  # head-to-head re-measurements of the defaults and each search's winner


def _uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True)
    return done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits")
    parser.add_argument("--slo-p99-ms", type=float, default=20.0)
    parser.add_argument("--window-ms", type=int, default=500)
    parser.add_argument("--protocol", choices=["http", "grpc"], default="grpc")
    parser.add_argument("--out", type=Path, default=None, help="Also write Markdown here.")
    args = parser.parse_args()
    objective = Objective(slo_p99_ms=args.slo_p99_ms)
    loads = [_uptime()]
    runs: dict[str, tuple[int, float, Measurement | None]] = {}
    tables: dict[str, dict[str, Measurement]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(DIGITS / "pipeline.yaml", args.model) as server,
    ):
        folder = Path(tmp)
        data = png_input_data(DIGITS / "artifacts" / "heldout", folder)
        url = server.grpc_url if args.protocol == "grpc" else server.http_url
        options = MeasureOptions(
            target=args.model,
            url=url.split("://")[1],
            protocol=args.protocol,
            window_ms=args.window_ms,
            input_data=str(data),
        )
        configs = ServerConfigs(server.http_url.split("://")[1])
        defaults = served(configs.config(args.model))
        print(f"defaults as built: {describe({args.model: defaults})}", flush=True)
        start = time.perf_counter()
        levels = measure_levels(options, objective, print)
        base = Measurement(settings={args.model: defaults}, levels=levels)
        runs["defaults"] = (1, time.perf_counter() - start, base)
        grid = make_grid([args.model], GRID)
        first = search.nearest(grid, {args.model: defaults})
        for strategy in ("brute", "quick"):
            file = ResultsFile(folder / f"{strategy}.jsonl", options.header())
            sweep = Sweep(grid, objective, options, configs, file, lambda s: print(s, flush=True))
            start = time.perf_counter()
            search.run(strategy, grid, sweep.evaluate, first)
            runs[strategy] = (sweep.measured, time.perf_counter() - start, sweep.best())
            tables[strategy] = dict(file.done)
            print(f"{strategy}: {sweep.measured} configs in {runs[strategy][1]:.0f} s", flush=True)
        finals = _head_to_head(runs, base, objective, options, configs)
        configs.close()
    loads.append(_uptime())
    report = _report(args, objective, grid.size(), runs, tables["brute"], finals, loads)
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


def _head_to_head(
    runs: dict[str, tuple[int, float, Measurement | None]],
    base: Measurement,
    objective: Objective,
    options: MeasureOptions,
    configs: ServerConfigs,
) -> dict[str, list[float]]:
    """The defaults and each search's winner measured again, interleaved, ROUNDS times: one
    measurement on a shared machine can be far off, the median of interleaved ones much less."""
    picks = {"defaults": base.settings}
    for name in ("brute", "quick"):
        winner = runs[name][2]
        if winner is not None:
            picks[name] = winner.settings
    finals: dict[str, list[float]] = {name: [] for name in picks}
    for rnd in range(ROUNDS):
        for name, settings in picks.items():
            configs.apply(options.target, settings)
            row = Measurement(settings=settings, levels=measure_levels(options, objective, print))
            best = row.best(objective)
            finals[name].append(best.throughput if best else 0.0)
            print(f"head to head {rnd + 1}/{ROUNDS}: {name} {finals[name][-1]:.0f}", flush=True)
    return finals


def _best(m: Measurement | None, objective: Objective) -> tuple[float, str, str]:
    row = m.best(objective) if m else None
    if m is None or row is None:
        return 0.0, "-", "none meets the SLO"
    return row.throughput, describe(m.settings), f"p99 {row.p99_us / 1000:.2f} ms at c={row.load:g}"


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _report(
    args: argparse.Namespace,
    objective: Objective,
    size: int,
    runs: dict[str, tuple[int, float, Measurement | None]],
    brute_table: dict[str, Measurement],
    finals: dict[str, list[float]],
    loads: list[str],
) -> str:
    slo = f"{objective.slo_p99_ms:g} ms"
    lines = [
        "# Sweep: brute force against the quick search",
        "",
        f"Machine: {describe_machine()}. Other agents were loading the same 2 cores during the "
        f"run; `uptime` before: `{loads[0]}`; after: `{loads[1]}`.",
        "",
        f"Command: `python -m benchmarks.sweep` (model `{args.model}`, the fused "
        f"digits pipeline; {args.protocol} with the raw transport; {args.window_ms} ms windows, "
        f"concurrency 1, 2, 4, ... until p99 > {slo} twice or throughput stops growing). "
        f"Grid: {GRID} = {size} configs. One run: the defaults, brute, quick (from the "
        f"defaults), then the defaults and both winners again, interleaved, {ROUNDS} times.",
        "",
        "## The searches",
        "",
        f"| search | configs measured | wall time s | best infer/s at p99 <= {slo} | "
        "best config | at |",
        "|---|---|---|---|---|---|",
    ]
    for name, (count, seconds, m) in runs.items():
        value, config, where = _best(m, objective)
        lines.append(f"| {name} | {count} | {seconds:.0f} | {value:.0f} | {config} | {where} |")
    lines += [
        "",
        f"## Head to head (infer/s at p99 <= {slo}; median of {ROUNDS} interleaved rounds)",
        "",
        "| config | " + " | ".join(f"round {i + 1}" for i in range(ROUNDS)) + " | median |",
        "|---|" + "---|" * (ROUNDS + 1),
    ]
    for name, values in finals.items():
        cells = " | ".join(f"{v:.0f}" for v in values)
        lines.append(f"| {name} | {cells} | {_median(values):.0f} |")
    brute_best = _best(runs["brute"][2], objective)[0]
    quick_pick = runs["quick"][2]
    as_brute = brute_table.get(key(quick_pick.settings)) if quick_pick else None
    picked = _best(as_brute, objective)[0]
    h2h = {name: _median(values) for name, values in finals.items()}
    share = runs["quick"][0] / max(runs["brute"][0], 1)
    checks = [
        ("quick's winner / brute's winner, as brute measured both", picked / brute_best, 0.95),
        (
            "quick's winner / brute's winner, head to head",
            h2h.get("quick", 0) / h2h["brute"] if h2h.get("brute") else 0.0,
            0.95,
        ),
        ("quick's measurements / brute's (<= 0.30)", share, None),
        (
            "best winner / defaults, head to head",
            max(h2h.get("brute", 0), h2h.get("quick", 0)) / h2h["defaults"]
            if h2h["defaults"]
            else float("inf"),
            1.5,
        ),
    ]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for name, value, floor in checks:
        met = value >= floor if floor is not None else value <= 0.30
        lines.append(f"| {name} | {value:.2f} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
