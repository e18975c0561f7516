"""The sweep's guided search against brute force on known-answer devices, in one run.

    python -m benchmarks.sweep_devices --out benchmarks/results/sweep_devices.md

For each device (A + B x rows ms per execution, one device shared by the instances): brute
force measures every grid point; the guided search profiles the model once, simulates every
point in concurrency mode and hill-climbs from the simulation's best over measured neighbours,
with a budget of 30% of the grid less the profile's windows (which count as measurements, one
each). Brute force's best measured point is the optimum the guided search is judged against,
twice: as brute measured both, and head to head (the two configs measured again, alternately,
ROUNDS times each, medians), since one config measured minutes apart on a shared machine moves
more than the 5% judged. The simulation's best (from a profile of the real device) is shown as
the optimum the device's arithmetic predicts."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tritonpipe.capacity import search
from tritonpipe.capacity.candidates import ServerConfigs, describe, key, make_grid
from tritonpipe.capacity.device import Device, write_device
from tritonpipe.capacity.guide import GUIDE_STABILITY, guided, rank
from tritonpipe.capacity.measure import profile_server
from tritonpipe.capacity.sweep import (
    Measurement,
    MeasureOptions,
    Objective,
    ResultsFile,
    Sweep,
    measure_levels,
)
from tritonpipe.errors import PerfError
from tritonpipe.perf.machine import describe_machine
from tritonpipe.server import ServerOptions, TritonServer

GRID = {"count": [1, 2], "max_batch_size": [4, 8, 16, 32], "max_queue_delay_us": [0, 1000, 4000]}
DEVICES = (
    (Device(name="s1", a_ms=4, b_ms=1, count=1, max_batch_size=8), 40.0),
    (Device(name="s2", a_ms=8, b_ms=0.5, count=1, max_batch_size=8), 60.0),
    (Device(name="s3", a_ms=2, b_ms=0.5, count=1, max_batch_size=8), 20.0),
)
SHARE = 0.3  # of brute force's measurements, the profile's windows included
ROUNDS = 2


def _uptime() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout
    return out.split("load average:")[-1].strip()


def _throughput(m: Measurement | None, objective: Objective) -> float:
    row = m.best(objective) if m else None
    return row.throughput if row else 0.0


def run_device(device: Device, slo_ms: float, window_ms: int, folder: Path) -> dict[str, object]:
    repo = folder / f"repo-{device.name}"
    write_device(repo, device)
    objective = Objective(slo_p99_ms=slo_ms)
    grid = make_grid([device.name], GRID)
    out: dict[str, object] = {"device": device, "slo": slo_ms, "load": [_uptime()]}
    options_server = ServerOptions(
        repository=repo, model_control="explicit", models=(device.name,), exit_timeout_s=5
    )
    with TritonServer(options_server, log_path=folder / f"{device.name}.log") as server:
        http = server.http_url.split("://")[1]
        options = MeasureOptions(
            target=device.name,
            url=server.grpc_url.split("://")[1],
            protocol="grpc",
            window_ms=window_ms,
            input_data="zero",
        )
        configs = ServerConfigs(http)
        tables = {}
        for strategy in ("brute", "guided"):
            start = time.perf_counter()
            ranking = None
            windows = 0
            if strategy == "guided":
                try:
                    profile = profile_server(
                        device.name,
                        options.url,
                        "grpc",
                        http,
                        window_ms,
                        "zero",
                        progress=print,
                        max_batch_size=max(GRID["max_batch_size"]),
                        stability=GUIDE_STABILITY,
                    )
                except PerfError as exc:  # the machine too busy to profile: said in the table
                    out["refused"] = str(exc)
                    break
                windows = len(profile.windows)
                ranking = rank(grid, profile, slo_ms / 1000)
                out["simulated_best"] = ranking[0]
            file = ResultsFile(folder / f"{device.name}-{strategy}.jsonl", options.header())
            sweep = Sweep(grid, objective, options, configs, file, lambda s: print(s, flush=True))
            if ranking is None:
                search.brute(grid, sweep.evaluate)
            else:
                budget = int(SHARE * grid.size()) - windows
                guided(grid, sweep.evaluate, ranking, lambda s: print(s, flush=True), budget)
            tables[strategy] = dict(file.done)
            out[strategy] = (sweep.measured, windows, time.perf_counter() - start, sweep.best())
            print(f"{device.name} {strategy}: {sweep.measured} configs, {windows} profile windows")
        if "refused" not in out:
            out["head_to_head"] = head_to_head(out, options, objective, configs)
        configs.close()
    out["brute_table"] = tables["brute"]
    out["load"] = [*out["load"], _uptime()]  # type: ignore[misc]
    return out


def head_to_head(
    out: dict[str, object], options: MeasureOptions, objective: Objective, configs: ServerConfigs
) -> tuple[float, float]:
    """Brute's best and guided's pick measured again, alternately, ROUNDS times each: the
    medians of their throughput within the SLO."""
    picks = [out[s][3] for s in ("brute", "guided")]  # type: ignore[index]
    seen: dict[str, list[float]] = {key(p.settings): [] for p in picks}
    for _ in range(ROUNDS):
        for settings in [p.settings for p in picks]:
            name = key(settings)
            if len(seen) == 1 and len(seen[name]) >= ROUNDS:
                continue  # the same config: measured ROUNDS times already
            configs.apply(options.target, settings)
            levels = measure_levels(options, objective, lambda s: print(s, flush=True))
            m = Measurement(settings=settings, levels=levels)
            seen[name].append(_throughput(m, objective))
            print(f"head to head: {describe(settings)} {seen[name][-1]:.0f}/s", flush=True)
    brute, guided_pick = (statistics.median(seen[key(p.settings)]) for p in picks)
    return brute, guided_pick


def report(results: list[dict[str, object]], args: argparse.Namespace) -> str:
    lines = [
        "# The guided search against brute force on known-answer devices",
        "",
        f"Machine: {describe_machine()}. Command: `python -m benchmarks.sweep_devices "
        f"--window-ms {args.window_ms}`. Grid: {GRID} ({make_grid(['m'], GRID).size()} "
        "points); each point measured with the "
        "generator (gRPC) at concurrency 1, 2, 4, ... until p99 breaks the SLO twice, then "
        "two bisection steps between the last concurrency that met it and the next. Targets: "
        "guided >= 95% of brute's best throughput under the SLO (as brute measured both) with "
        "<= 30% of its measurements (the profile's windows counted). Head to head: both "
        f"configs measured again, alternately, {ROUNDS} times each (medians).",
        "",
        "| device | SLO ms | simulated best (from the profile) | brute: configs, s, best "
        "| guided: configs + profile windows, s, pick "
        "| guided's pick as brute measured it / brute's best | head to head: guided / brute "
        "| measurements guided / brute | load before / after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        grid = make_grid([r["device"].name], GRID)  # type: ignore[attr-defined]
        d: Device = r["device"]  # type: ignore[assignment]
        if "refused" in r:
            lines.append(
                f"| A={d.a_ms:g} B={d.b_ms:g} | {r['slo']:g} | the guided search's profile "
                f"was refused: {r['refused']} | | | | | | {' / '.join(r['load'])} |"  # type: ignore[arg-type]
            )
            continue
        objective = Objective(slo_p99_ms=r["slo"])  # type: ignore[arg-type]
        b_count, _, b_s, b_best = r["brute"]  # type: ignore[misc]
        g_count, g_windows, g_s, g_best = r["guided"]  # type: ignore[misc]
        table: dict[str, Measurement] = r["brute_table"]  # type: ignore[assignment]
        best = _throughput(b_best, objective)
        as_brute = table.get(key(g_best.settings)) if g_best else None
        share = (g_count + g_windows) / grid.size()  # brute measures every point
        h_brute, h_guided = r["head_to_head"]  # type: ignore[misc]
        s_point, s_rate = r["simulated_best"]  # type: ignore[misc]
        simulated = describe(grid.settings(s_point))
        lines.append(
            f"| A={d.a_ms:g} B={d.b_ms:g} | {r['slo']:g} | {simulated} {s_rate:.0f}/s | "
            f"{b_count}, {b_s:.0f}, "
            f"{describe(b_best.settings) if b_best else '-'} {best:.0f}/s | "
            f"{g_count} + {g_windows}, "
            f"{g_s:.0f}, {describe(g_best.settings) if g_best else '-'} "
            f"{_throughput(g_best, objective):.0f}/s | "
            f"{_throughput(as_brute, objective) / best if best else 0:.2f} | "
            f"{h_guided:.0f} / {h_brute:.0f} = {h_guided / h_brute if h_brute else 0:.2f} | "
            f"{share:.2f} | "
            f"{' / '.join(r['load'])} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-ms", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", default=None, help="Device names, comma separated.")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="Folder for the results files (kept: a rerun resumes what was measured).",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        chosen = [(d, slo) for d, slo in DEVICES if not args.only or d.name in args.only.split(",")]
        results = [run_device(d, slo, args.window_ms, work) for d, slo in chosen]
    text = report(results, args)
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
