"""The sweep's guided search against brute force on known-answer devices, in one run.

    python -m benchmarks.sweep_devices --out benchmarks/results/sweep_devices.md

For each device (A + B x rows ms per execution, one device shared by the instances): brute
force measures every grid point; the guided search profiles the model once, simulates every
point and measures the best-ranked tenth (at least two). Brute force's best measured point is
the optimum the guided search is judged against, as brute measured both. The profile's windows
count as measurements (one each) in the guided search's share."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tritonpipe.capacity import search
from tritonpipe.capacity.candidates import ServerConfigs, describe, key, make_grid
from tritonpipe.capacity.device import Device, write_device
from tritonpipe.capacity.guide import rank
from tritonpipe.capacity.measure import profile_server
from tritonpipe.capacity.sweep import Measurement, MeasureOptions, Objective, ResultsFile, Sweep
from tritonpipe.perf.machine import describe_machine
from tritonpipe.server import ServerOptions, TritonServer

GRID = {"count": [1, 2], "max_batch_size": [2, 4, 8], "max_queue_delay_us": [0, 1000, 4000]}
DEVICES = (
    (Device(name="s1", a_ms=4, b_ms=1, count=1, max_batch_size=8), 40.0),
    (Device(name="s2", a_ms=8, b_ms=0.5, count=1, max_batch_size=8), 60.0),
)


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
                profile = profile_server(
                    device.name,
                    options.url,
                    "grpc",
                    http,
                    window_ms,
                    "zero",
                    progress=print,
                    max_batch_size=max(GRID["max_batch_size"]),
                )
                windows = len(profile.windows)
                ranking = rank(grid, profile, slo_ms / 1000)
            file = ResultsFile(folder / f"{device.name}-{strategy}.jsonl", options.header())
            sweep = Sweep(grid, objective, options, configs, file, lambda s: print(s, flush=True))
            search.run(strategy, grid, sweep.evaluate, search.nearest(grid, {}), ranking)
            tables[strategy] = dict(file.done)
            out[strategy] = (sweep.measured, windows, time.perf_counter() - start, sweep.best())
            print(f"{device.name} {strategy}: {sweep.measured} configs, {windows} profile windows")
        configs.close()
    out["brute_table"] = tables["brute"]
    out["load"] = [*out["load"], _uptime()]  # type: ignore[misc]
    return out


def report(results: list[dict[str, object]], args: argparse.Namespace) -> str:
    lines = [
        "# The guided search against brute force on known-answer devices",
        "",
        f"Machine: {describe_machine()}. Command: `python -m benchmarks.sweep_devices "
        f"--window-ms {args.window_ms}`. Grid: {GRID} (18 points); each point measured with the "
        "generator (gRPC) at concurrency 1, 2, 4, ... until p99 breaks the SLO twice. Targets: "
        "guided >= 95% of brute's best throughput under the SLO (as brute measured both) with "
        "<= 30% of its measurements.",
        "",
        "| device | SLO ms | brute: configs, s, best | guided: configs + profile windows, s, pick "
        "| guided's pick as brute measured it / brute's best | measurements guided / brute "
        "| load before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d: Device = r["device"]  # type: ignore[assignment]
        objective = Objective(slo_p99_ms=r["slo"])  # type: ignore[arg-type]
        b_count, _, b_s, b_best = r["brute"]  # type: ignore[misc]
        g_count, g_windows, g_s, g_best = r["guided"]  # type: ignore[misc]
        table: dict[str, Measurement] = r["brute_table"]  # type: ignore[assignment]
        best = _throughput(b_best, objective)
        as_brute = table.get(key(g_best.settings)) if g_best else None
        share = (g_count + g_windows) / max(b_count, 1)
        lines.append(
            f"| A={d.a_ms:g} B={d.b_ms:g} | {r['slo']:g} | {b_count}, {b_s:.0f}, "
            f"{describe(b_best.settings) if b_best else '-'} {best:.0f}/s | "
            f"{g_count} + {g_windows}, "
            f"{g_s:.0f}, {describe(g_best.settings) if g_best else '-'} "
            f"{_throughput(g_best, objective):.0f}/s | "
            f"{_throughput(as_brute, objective) / best if best else 0:.2f} | {share:.2f} | "
            f"{' / '.join(r['load'])} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-ms", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_device(d, slo, args.window_ms, Path(tmp)) for d, slo in DEVICES]
    text = report(results, args)
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
