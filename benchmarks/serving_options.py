"""tritonserver's own options against the fused digits model: HTTP thread count and the Python
backend's shared-memory sizes, each its own server, measured with wrk at 1, 8 and 32
connections, the sets taken in turn and in reverse order the next round (the machine's load
moves between minutes; the median round is kept).

    python -m benchmarks.serving_options --seconds 8 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.digits_requests import images, triton_request
from benchmarks.peers import cpu_seconds
from tritonpipe.perf.machine import describe_machine
from tritonpipe.perf.wrk import run_wrk
from tritonpipe.server import ServerOptions, TritonServer

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = (1, 8, 32)
# (label, extra tritonserver arguments); Triton 2.51's defaults: 8 HTTP threads, a 1 MiB shared
# memory region per stub that grows by 1 MiB.
SETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("defaults", ()),
    ("--http-thread-count=2", ("--http-thread-count=2",)),
    ("--http-thread-count=4", ("--http-thread-count=4",)),
    ("--http-thread-count=16", ("--http-thread-count=16",)),
    (
        "python shm 16 MiB, growth 4 MiB",
        (
            "--backend-config=python,shm-default-byte-size=16777216",
            "--backend-config=python,shm-growth-byte-size=4194304",
        ),
    ),
)


@dataclass(frozen=True)
class Point:
    throughput: float
    p50_us: float
    p99_us: float
    cpu_us_per_request: float  # the server's process tree


def measure(
    repository: Path, model: str, seconds: float, rounds: int
) -> dict[tuple[str, int], Point]:
    """Every set at every connection count; the median round by throughput of each."""
    body, headers = triton_request(images(1)[0, 0])
    taken: dict[tuple[str, int], list[Point]] = {}
    order = list(SETS)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for label, extra in order:
                options = ServerOptions(
                    repository=repository,
                    model_control="explicit",
                    models=(model,),
                    exit_timeout_s=5,
                    extra_args=extra,
                )
                log = Path(tmp) / f"server_{len(taken)}_{r}.log"
                with TritonServer(options, log_path=log) as server:
                    url = f"{server.http_url}/v2/models/{model}/infer"
                    for c in CONNECTIONS:
                        run_wrk(url, body, connections=c, seconds=1, headers=headers)
                        cpu, start = cpu_seconds(server.pid or 0), time.monotonic()
                        result = run_wrk(url, body, connections=c, seconds=seconds, headers=headers)
                        cpu = cpu_seconds(server.pid or 0) - cpu
                        if result.errors:
                            raise RuntimeError(f"{label}: {result.errors} failed requests at c={c}")
                        per = cpu * 1e6 / result.requests if result.requests else 0.0
                        point = Point(result.throughput, result.p50_us, result.p99_us, per)
                        taken.setdefault((label, c), []).append(point)
                        print(
                            f"  round {r + 1} {label:<32} c={c:<3} {result.throughput:8.0f}/s "
                            f"p50 {result.p50_us / 1000:.2f} ms cpu {per:.0f} us/req "
                            f"({time.monotonic() - start:.0f} s)",
                            flush=True,
                        )
            order.reverse()
    return {key: _median(points) for key, points in taken.items()}


def _median(points: list[Point]) -> Point:
    """The round with the median throughput (of two, the slower)."""
    ranked = sorted(points, key=lambda p: p.throughput)
    return ranked[(len(ranked) - 1) // 2]


def report(points: dict[tuple[str, int], Point], model: str, seconds: float, rounds: int) -> str:
    head = ["set", *(f"{w} at {c}" for c in CONNECTIONS for w in ("req/s", "p50 ms", "CPU us/req"))]
    lines = [
        f"### tritonserver options: `{model}` over HTTP (wrk, {seconds:g} s a point, median of "
        f"{rounds} round(s))",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    base = {c: points[("defaults", c)].throughput for c in CONNECTIONS if ("defaults", c) in points}
    for label, _ in SETS:
        cells = [label]
        for c in CONNECTIONS:
            p = points.get((label, c))
            if p is None:
                cells += ["-", "-", "-"]
                continue
            ratio = f" ({p.throughput / base[c]:.2f}x)" if c in base and label != "defaults" else ""
            cells += [
                f"{p.throughput:.0f}{ratio}",
                f"{p.p50_us / 1000:.2f}",
                f"{p.cpu_us_per_request:.0f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = report(measure(args.repository.resolve(), args.model, args.seconds, args.rounds),
                  args.model, args.seconds, args.rounds)  # fmt: skip
    text = f"Machine: {describe_machine()}\n\n{text}\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
