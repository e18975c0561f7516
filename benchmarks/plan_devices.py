"""The planner against known-answer devices: predicted against measured p99 and SLO capacity.

    python -m benchmarks.plan_devices --runs 2 --out benchmarks/results/plan_devices.md

For each device setting (A, B, instances, max batch, queue delay, SLO) and run: serve the
device, measure its service profile the way `tritonpipe plan` does, predict the SLO capacity
and the p99 at 50/70/90% of it, then measure those rates under Poisson arrivals, and the SLO
capacity itself (the rate where the measured p99, made monotone in the rate, crosses the SLO,
between measured rates around the predicted one). The device's service time does not depend on
CPU load; the Python backend and the client around it still do, and `uptime` is recorded with
every run."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tritonpipe.capacity.device import Device, write_device
from tritonpipe.capacity.measure import profile_server
from tritonpipe.capacity.plan import measure_rates
from tritonpipe.capacity.predict import Predictor
from tritonpipe.errors import PerfError
from tritonpipe.perf.machine import describe_machine
from tritonpipe.server import ServerOptions, TritonServer

FRACTIONS = (0.5, 0.7, 0.9)
AROUND = (0.8, 0.9, 1.0, 1.1, 1.2)


@dataclass(frozen=True)
class Setting:
    device: Device
    slo_ms: float

    def label(self) -> str:
        d = self.device
        return (
            f"A={d.a_ms:g} B={d.b_ms:g} n={d.count} b={d.max_batch_size} "
            f"d={d.max_queue_delay_us} SLO {self.slo_ms:g} ms"
        )


SETTINGS = (
    Setting(Device(name="k1", a_ms=4, b_ms=1, count=1, max_batch_size=8), 40),
    Setting(Device(name="k2", a_ms=8, b_ms=1, count=2, max_batch_size=32), 100),
    Setting(
        Device(name="k3", a_ms=3, b_ms=2, count=2, max_batch_size=8, max_queue_delay_us=2000), 50
    ),
)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def poisson_p99(model: str, url: str, rate: float, window_ms: int) -> tuple[float, float]:
    """(measured throughput, p99 seconds) of three windows of Poisson arrivals at ``rate`` over
    gRPC, as `plan --validate` measures them (at least 4000 requests in all)."""
    return measure_rates(model, url, "grpc", [rate], window_ms)[0]


def monotone(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The p99s made non-decreasing in the rate (pool adjacent violators): one window's p99 on
    a shared machine can jump above its neighbours."""
    blocks: list[list[float]] = []  # [sum, count] per pooled block
    for _, p in sorted(points):
        blocks.append([p, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    values = [total / count for total, count in blocks for _ in range(int(count))]
    return [(r, v) for (r, _), v in zip(sorted(points), values, strict=True)]


def crossing(points: list[tuple[float, float]], slo_s: float) -> float | None:
    """The rate where the (monotone) p99 crosses ``slo_s``, linear between measured rates."""
    points = monotone(points)
    for (r0, p0), (r1, p1) in zip(points, points[1:], strict=False):
        if p0 <= slo_s < p1:
            return r0 + (r1 - r0) * (slo_s - p0) / (p1 - p0)
    return None


def run_setting(setting: Setting, window_ms: int, folder: Path) -> dict[str, object]:
    device = setting.device
    repo = folder / f"repo-{device.name}"
    write_device(repo, device)
    slo_s = setting.slo_ms / 1000
    start = time.perf_counter()
    load_before = _uptime()
    with TritonServer(
        ServerOptions(
            repository=repo, model_control="explicit", models=(device.name,), exit_timeout_s=5
        ),
        log_path=folder / f"{device.name}.log",
    ) as server:
        url = server.grpc_url.split("://")[1]
        http = server.http_url.split("://")[1]
        try:
            profile = profile_server(device.name, url, "grpc", http, progress=print, slo_s=slo_s)
        except PerfError as exc:  # refused as unstable: a row that says so
            print(f"  refused: {exc}", flush=True)
            return {"setting": setting, "refused": str(exc), "load": (load_before, _uptime())}
        predictor = Predictor(profile)
        capacity = predictor.capacity(slo_s)
        print(f"  predicted SLO capacity {capacity.text('{:.0f}')}/s", flush=True)
        checks = []
        for fraction in FRACTIONS:
            rate = capacity.value * fraction
            predicted = predictor.p99(rate)
            throughput, measured = poisson_p99(device.name, url, rate, window_ms)
            checks.append((fraction, rate, predicted, measured))
            print(
                f"  {fraction:.0%} {rate:.0f}/s: predicted p99 {predicted.value * 1000:.1f} ms, "
                f"measured {measured * 1000:.1f} ms",
                flush=True,
            )
        around: list[tuple[float, float]] = []
        factors = list(AROUND)
        extended = False
        while factors:
            f = factors.pop(0)
            rate = capacity.value * f
            around.append((rate, poisson_p99(device.name, url, rate, window_ms)[1]))
            print(f"  x{f:.2f}: p99 {around[-1][1] * 1000:.1f} ms", flush=True)
            if not factors and not extended and crossing(around, slo_s) is None:
                extended = True  # one step further out, on the side the crossing lies
                above = min(p for _, p in around) > slo_s
                factors = [0.6, 0.7] if above else [1.35, 1.5]
        measured_capacity = crossing(around, slo_s)
    return {
        "setting": setting,
        "profile": profile,
        "capacity": capacity,
        "measured_capacity": measured_capacity,
        "checks": checks,
        "around": sorted(around),
        "load": (load_before, _uptime()),
        "seconds": time.perf_counter() - start,
    }


def report(results: list[dict[str, object]], args: argparse.Namespace) -> str:
    lines = [
        "# The planner against known-answer devices",
        "",
        f"Machine: {describe_machine()}. Command: `python -m benchmarks.plan_devices --runs "
        f"{args.runs} --window-ms {args.window_ms}` (gRPC; the profile in 500 ms windows; "
        f"Poisson rates measured over 3 windows of {args.window_ms} ms each). Targets: p99 within "
        "+-15% at 50/70/90% of the planned (predicted SLO) capacity; SLO capacity within +-10%.",
        "",
        "| setting | run | A+B fit (ms) | predicted capacity/s (interval) | measured/s | error | "
        "p99 50% pred/meas ms | 70% | 90% | worst p99 error | load before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results):
        if "refused" in r:
            load = " / ".join(u.split("load average:")[-1].strip() for u in r["load"])  # type: ignore[attr-defined]
            lines.append(
                f"| {r['setting'].label()} | {i % args.runs + 1} | refused: {r['refused']} "  # type: ignore[attr-defined]
                f"| | | | | | | | {load} |"
            )
            continue
        s, cap, meas = r["setting"], r["capacity"], r["measured_capacity"]
        a, b, err = r["profile"].fit()  # type: ignore[attr-defined]
        cap_err = f"{meas / cap.value - 1:+.1%}" if meas else "not bracketed"  # type: ignore[attr-defined,operator]
        cells = []
        worst = 0.0
        for _, _, predicted, measured in r["checks"]:  # type: ignore[attr-defined]
            e = predicted.value / measured - 1
            worst = max(worst, abs(e))
            cells.append(f"{predicted.value * 1000:.1f} / {measured * 1000:.1f} ({e:+.0%})")
        load = " / ".join(u.split("load average:")[-1].strip() for u in r["load"])  # type: ignore[attr-defined]
        lines.append(
            f"| {s.label()} | {i % args.runs + 1} | {a * 1000:.2f} + {b * 1000:.3f} x rows "  # type: ignore[attr-defined]
            f"(fit {err:.0%}) | {cap.text('{:.0f}')} | {meas or 0:.0f} | {cap_err} | "  # type: ignore[attr-defined]
            + " | ".join(cells)
            + f" | {worst:.0%} | {load} |"
        )
    lines += ["", "Measured p99 around the predicted capacity (rate/s: p99 ms):", ""]
    for i, r in enumerate(results):
        if "refused" in r:
            continue
        pts = ", ".join(f"{rate:.0f}: {p * 1000:.1f}" for rate, p in r["around"])  # type: ignore[attr-defined]
        lines.append(f"- {r['setting'].label()} run {i % args.runs + 1}: {pts}")  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--window-ms", type=int, default=3000)
    parser.add_argument("--only", default=None, help="Device names, comma separated.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    chosen = [s for s in SETTINGS if not args.only or s.device.name in args.only.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in chosen:
            for run in range(args.runs):
                print(f"{setting.label()}, run {run + 1}", flush=True)
                results.append(run_setting(setting, args.window_ms, Path(tmp)))
    text = report(results, args)
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
