"""The serving benchmark's Markdown: every side at 1, 8 and 32 connections side by side, the
ratios the targets are stated in, gRPC and the fused model's instance / queue-delay sweep."""

from __future__ import annotations

import argparse
import os
from typing import Any

CONNECTIONS = (1, 8, 32)
NAMES = {
    "unfused": "Triton unfused",
    "fused": "Triton fused",
    "fastapi": "FastAPI",
    "bentoml": "BentoML",
    "ray": "Ray Serve",
}
PEERS = ("fastapi", "bentoml", "ray")


def _head(*columns: str) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _row(label: str, values: list[str]) -> str:
    return "| " + " | ".join([label, *values]) + " |"


def _http(http: dict[tuple[str, int], Any], idle: dict[str, float]) -> list[str]:
    sides = [s for s in NAMES if (s, 1) in http]
    lines = [
        "## HTTP (wrk; Triton's binary tensor protocol, a raw PNG body for FastAPI and Ray "
        "Serve, a multipart form for BentoML's file input)",
        "",
        "cores: CPU seconds of the side's process tree per second of load (the server and its "
        "workers, not wrk); idle: the same with no load.",
        "",
        *_head("side", "connections", "req/s", "p50 ms", "p99 ms", "cores", "req/s per core"),
    ]
    for side in sides:
        for c in CONNECTIONS:
            p = http[(side, c)]
            per_core = f"{p.wrk.throughput / p.cores:.0f}" if p.cores > 0 else ""
            lines.append(
                _row(
                    NAMES[side],
                    [str(c), f"{p.wrk.throughput:.0f}", f"{p.wrk.p50_us / 1000:.2f}"]
                    + [f"{p.wrk.p99_us / 1000:.2f}", f"{p.cores:.2f}", per_core],
                )
            )
    lines += ["", *_head("side", *("idle cores" for _ in [0]))]
    for side in sides:
        lines.append(_row(NAMES[side], [f"{idle.get(side, 0):.2f}"]))
    peers = [s for s in PEERS if s in sides]
    if "fused" in sides and peers:
        lines += [
            "",
            "### Fused Triton against each peer (ratios from the same run)",
            "",
            *_head(
                "connections",
                *(f"req/s fused / {NAMES[p]}" for p in peers),
                *(f"p50 fused / {NAMES[p]}" for p in peers),
            ),
        ]
        for c in CONNECTIONS:
            f = http[("fused", c)].wrk
            lines.append(
                _row(
                    str(c),
                    [f"{f.throughput / http[(p, c)].wrk.throughput:.2f}" for p in peers]
                    + [f"{f.p50_us / http[(p, c)].wrk.p50_us:.2f}" for p in peers],
                )
            )
    return lines


def _targets(http: dict[tuple[str, int], Any]) -> list[str]:
    peers = [s for s in PEERS if (s, 1) in http]
    if ("fused", 1) not in http or not peers:
        return []
    lines = ["", "## Targets (against the best peer at each point)", ""]
    lines += _head("target", "best peer", "measured", "met")
    for c, floor in ((8, 1.1), (32, 1.5)):
        best = max(peers, key=lambda p: http[(p, c)].wrk.throughput)
        ratio = http[("fused", c)].wrk.throughput / http[(best, c)].wrk.throughput
        lines.append(
            _row(
                f"fused req/s >= {floor}x the best peer at {c} connections",
                [NAMES[best], f"{ratio:.2f}", "yes" if ratio >= floor else "no"],
            )
        )
    best = min(peers, key=lambda p: http[(p, 1)].wrk.p50_us)
    fused = http[("fused", 1)].wrk.p50_us
    lines.append(
        _row(
            "fused p50 at 1 connection no worse than the best peer's",
            [
                NAMES[best],
                f"{fused / 1000:.2f} ms against {http[(best, 1)].wrk.p50_us / 1000:.2f} ms",
                "yes" if fused <= http[(best, 1)].wrk.p50_us else "no",
            ],
        )
    )
    return lines


def _grpc(grpc: dict[tuple[str, int], Any]) -> list[str]:
    if not grpc:
        return []
    lines = [
        "",
        "## gRPC (perf_analyzer)",
        "",
        *_head(
            "concurrency",
            *("unfused infer/s", "fused infer/s", "fused/unfused"),
            *("p50 ms unfused", "p50 ms fused", "p99 ms unfused", "p99 ms fused"),
        ),
    ]
    for c in CONNECTIONS:
        u3, f3 = grpc[("unfused", c)], grpc[("fused", c)]
        if u3 is None or f3 is None:
            lines.append(_row(str(c), ["no stable measurement"] + [""] * 6))
            continue
        lines.append(
            _row(
                str(c),
                [f"{u3[0]:.0f}", f"{f3[0]:.0f}", f"{f3[0] / u3[0]:.2f}"]
                + [f"{v / 1000:.2f}" for v in (u3[1], f3[1], u3[2], f3[2])],
            )
        )
    return lines


def _delays(delays: dict[tuple[int, int, int], Any]) -> list[str]:
    if not delays:
        return []
    counts = sorted({k[2] for k in delays})
    lines = [
        "",
        "## Fused model: instances and queue delay (HTTP, wrk)",
        "",
        *_head(
            "instances",
            "max_queue_delay_us",
            *(f"{what} at {c}" for c in counts for what in ("req/s", "p50 ms", "p99 ms")),
        ),
    ]
    for count, delay in sorted({(k[0], k[1]) for k in delays}):
        cells = [str(delay)]
        for c in counts:
            r = delays[(count, delay, c)]
            cells += [f"{r.throughput:.0f}", f"{r.p50_us / 1000:.2f}", f"{r.p99_us / 1000:.2f}"]
        lines.append(_row(str(count), cells))
    return lines


def report(
    machine: str,
    local: dict[str, float],
    http: dict[tuple[str, int], Any],
    idle: dict[str, float],
    missing: dict[str, str],
    grpc: dict[tuple[str, int], Any],
    delays: dict[tuple[int, int, int], Any],
    seconds: float,
    rounds: int,
    args: argparse.Namespace,
    breakdown: str = "",
    options: str = "",
) -> str:
    cores = os.cpu_count() or 1
    extra = " ".join(args.triton_arg) or "none"
    lines = [
        "# Serving the digits pipeline: Triton fused and unfused, in-process, and the peers",
        "",
        f"Machine: {machine}.",
        "",
        f"Command: `make bench-serving` (`python -m benchmarks.serving`), {seconds:g} s per "
        f"point after a 1 s warm-up, one PNG per request, {rounds} round(s) (each side's "
        "median round by throughput is shown; of two, the slower), extra tritonserver "
        f"arguments: {extra}. Every side runs "
        f"{cores} worker(s) (one per core) with one intra-op thread each; wrk (one thread) "
        + (
            "and every server, all up at once, share the machine."
            if getattr(args, "together", False)
            else "shares the machine with the side measured; each peer runs alone (started "
            "for its turn, stopped after it), tritonserver idle beside it."
        ),
    ]
    for label, reason in missing.items():
        lines += ["", f"**{NAMES[label]} not measured:** {reason}"]
    if local:
        lines += [
            "",
            "## In-process runner (no server, one intra-op thread per process)",
            "",
            f"- per call at batch 1: median {local['per_call_us']:.0f} us",
            f"- batch 64, one process: {local['batch64_1proc']:.0f} images/s",
            f"- batch 64, one process per core: {local[f'batch64_{cores}proc']:.0f} images/s",
        ]
    if http:
        lines += ["", *_http(http, idle), *_targets(http)]
    lines += _grpc(grpc) + _delays(delays)
    if options:
        lines += ["", "## Fused model: tritonserver's options", "", options.rstrip()]
    if breakdown:
        lines += ["", "## Where the fused model's time goes", "", breakdown.rstrip()]
    return "\n".join(lines) + "\n"
