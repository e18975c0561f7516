"""Serving benchmark: the digits pipeline on Triton and on its peers, one machine, one run.

    python -m benchmarks.serving --repository model_repository \
        --out benchmarks/results/serving.md

1. in-process: ``tritonpipe.pipeline.Pipeline`` called directly (no network): per-call time at
   batch 1, and batched throughput at batch 64 on one core and on every core (one process each);
2. the unfused ensemble (``digits_steps``: one Triton model per step, a process hop per step);
3. the fused model (``digits``: the same steps in one Python-backend model);
4. the peers (``benchmarks/peers.py``): FastAPI + onnxruntime (the server users write
   themselves), BentoML with adaptive batching and Ray Serve with ``@serve.batch``, each running
   the same stage functions and ONNX file on one worker per core.
HTTP load comes from wrk (one PNG per request; Triton's binary tensor protocol) for every server
at 1, 8 and 32 connections, with the CPU each side's process tree used. Each peer runs alone: it
is started for its turn and stopped after it, with tritonserver idle beside it (``--together``
keeps every peer up throughout, as the earlier runs did: Ray's idle agents then take CPU from
every other side). ``--rounds`` repeats the sweep, each round in the reverse order of the last.
gRPC load comes from perf_analyzer for the two Triton targets. Then the fused model's queue
delay and instance count are varied through explicit model control (a config override) at 1, 8
and 32 connections, tritonserver's own options each on a server of their own
(``benchmarks/serving_options.py``), and a last server with Triton's TIMESTAMPS trace on shows
where the fused model's time goes (``benchmarks/serving_breakdown.py``). Prints each table with
its ratios and writes Markdown with the machine described.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton_http

from benchmarks import peers, serving_breakdown, serving_options
from benchmarks.digits_requests import images, triton_request
from benchmarks.peers import Peer, cpu_seconds
from benchmarks.serving_report import report as _report
from tritonpipe.errors import TritonPipeError
from tritonpipe.perf.input_data import to_json
from tritonpipe.perf.machine import describe_machine
from tritonpipe.perf.results_csv import read_csv
from tritonpipe.perf.wrk import WrkResult, run_wrk
from tritonpipe.pipeline import Pipeline
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.options import free_port

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
CONNECTIONS = (1, 8, 32)
TARGETS = {"unfused": "digits_steps", "fused": "digits"}


def _batched_loop(repository: str, seconds: float, queue: Any) -> None:
    pipe = Pipeline.load(repository, "digits", threads=1)
    batch = images(64)
    pipe({"image": batch})
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pipe({"image": batch})
        done += len(batch)
    queue.put(done / (time.perf_counter() - start))


def in_process(repository: Path, seconds: float) -> dict[str, float]:
    """Per-call time at batch 1 (median), and images/s at batch 64 on one and on every core."""
    pipe = Pipeline.load(repository, "digits", threads=1)
    one = images(1)
    for _ in range(200):
        pipe({"image": one})
    calls = []
    for _ in range(2000):
        start = time.perf_counter_ns()
        pipe({"image": one})
        calls.append(time.perf_counter_ns() - start)
    result = {"per_call_us": statistics.median(calls) / 1000}
    context = multiprocessing.get_context("spawn")
    for procs in (1, os.cpu_count() or 1):
        queue = context.Queue()
        workers = [
            context.Process(target=_batched_loop, args=(str(repository), seconds, queue))
            for _ in range(procs)
        ]
        for w in workers:
            w.start()
        rates = [queue.get() for _ in workers]
        for w in workers:
            w.join()
        result[f"batch64_{procs}proc"] = sum(rates)
    return result


@dataclass(frozen=True)
class Point:
    """One side at one connection count: wrk's figures and the cores its processes used."""

    wrk: WrkResult
    cores: float


def _measure(url: str, body: bytes, headers: dict[str, str], c: int, seconds: float) -> WrkResult:
    run_wrk(url, body, connections=c, seconds=1, headers=headers)  # warm up
    result = run_wrk(url, body, connections=c, seconds=seconds, headers=headers)
    if result.errors:
        raise RuntimeError(f"{url}: {result.errors} failed requests at {c} connections")
    return result


def _point(peer: Peer, c: int, seconds: float) -> Point:
    run_wrk(peer.url, peer.body, connections=c, seconds=1, headers=peer.headers)  # warm up
    cpu, start = cpu_seconds(peer.pid), time.monotonic()
    result = run_wrk(peer.url, peer.body, connections=c, seconds=seconds, headers=peer.headers)
    cores = (cpu_seconds(peer.pid) - cpu) / (time.monotonic() - start)
    if result.errors:
        raise RuntimeError(f"{peer.label}: {result.errors} failed requests at {c} connections")
    return Point(result, cores)


def _median_point(points: list[Point]) -> Point:
    """The round with the median throughput (its own latencies and CPU with it)."""
    ranked = sorted(points, key=lambda p: p.wrk.throughput)
    return ranked[(len(ranked) - 1) // 2]


def _grpc(
    server: TritonServer, model: str, c: int, data: Path, folder: Path
) -> tuple[float, float, float] | None:
    csv = folder / f"{model}_{c}.csv"
    command = [sys.executable, "-m", "tritonpipe.cli", "perf", "profile", "-m", model]
    command += ["-u", server.grpc_url.split("://")[1], "-i", "grpc", "--concurrency-range", str(c)]
    command += ["-p", "3000", "--max-trials", "10", "--stability-percentage", "25"]
    command += ["--input-data", str(data), "-f", str(csv), "--engine", "perf_analyzer"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  perf_analyzer on {model} at c={c} failed: {done.stderr.strip()[-300:]}")
        return None
    row = read_csv(csv)[1][0]
    return row.throughput, row.p50_us, row.p99_us


def _reload(server: TritonServer, count: int, delay_us: int) -> None:
    client = triton_http.InferenceServerClient(server.http_url.split("://")[1])
    config = client.get_model_config("digits")
    config["instance_group"][0]["count"] = count
    config["dynamic_batching"]["max_queue_delay_microseconds"] = delay_us
    client.load_model("digits", config=json.dumps(config))
    client.close()


def _http_sweep(sides: list[Peer], rounds: int, seconds: float) -> dict[tuple[str, int], Point]:
    """Every side at every connection count, in turn; each round reverses the order."""
    taken: dict[tuple[str, int], list[Point]] = {}
    order = list(sides)
    for r in range(rounds):
        for c in CONNECTIONS:
            for peer in order:
                point = _point(peer, c, seconds)
                taken.setdefault((peer.label, c), []).append(point)
                print(
                    f"  round {r + 1} {peer.label:<8} c={c:<3} {point.wrk} cores={point.cores:.2f}",
                    flush=True,
                )
        order.reverse()
    return {key: _median_point(points) for key, points in taken.items()}


def _http_alone(
    sides: list[Peer],
    names: list[str],
    start: Callable[[str], Peer | None],
    rounds: int,
    seconds: float,
    idle: dict[str, float],
) -> dict[tuple[str, int], Point]:
    """Every side at every connection count with no peer but itself running: Triton's sides are
    up throughout (an idle tritonserver uses no CPU), each peer is started for its turn and
    stopped after it (Ray's idle agents take ~0.2 of a core from whatever runs beside them).
    Each round reverses the order; a peer's idle cores are measured on its first start."""
    taken: dict[tuple[str, int], list[Point]] = {}
    order = [*(s.label for s in sides), *names]
    for r in range(rounds):
        for label in order:
            started = None if label in {s.label for s in sides} else start(label)
            side = started or next((s for s in sides if s.label == label), None)
            if side is None:  # a peer that could not start (said why)
                continue
            try:
                if label not in idle:
                    idle.update(_idle_cores([side]))
                for c in CONNECTIONS:
                    point = _point(side, c, seconds)
                    taken.setdefault((label, c), []).append(point)
                    print(
                        f"  round {r + 1} {label:<8} c={c:<3} {point.wrk} cores={point.cores:.2f}",
                        flush=True,
                    )
            finally:
                if started is not None:
                    started.stop()
        order.reverse()
    return {key: _median_point(points) for key, points in taken.items()}


def _idle_cores(sides: list[Peer], seconds: float = 3.0) -> dict[str, float]:
    """The cores each side's processes use with no load (Ray's agents, BentoML's supervisor)."""
    before = {p.label: cpu_seconds(p.pid) for p in sides}
    time.sleep(seconds)
    return {p.label: (cpu_seconds(p.pid) - before[p.label]) / seconds for p in sides}


def _start_peer(
    label: str, repo: Path, png: bytes, folder: Path, missing: dict[str, str]
) -> Peer | None:
    """Peer ``label`` started (None, and why in ``missing``, when it cannot run)."""
    print(f"starting {label} ...", flush=True)
    onnx = repo / "digits_onnx" / "1" / "model.onnx"
    try:
        return peers.start(label, free_port(), onnx, png, folder / f"{label}.log")
    except RuntimeError as exc:
        missing[label] = str(exc)
        print(f"  {label}: {exc}", flush=True)
        return None


def _triton(
    args: argparse.Namespace,
    repo: Path,
    folder: Path,
    sections: set[str],
    running: list[Peer],
    start: Callable[[str], Peer | None],
    http: dict[tuple[str, int], Point],
    idle: dict[str, float],
    grpc: dict[tuple[str, int], tuple[float, float, float] | None],
    delays: dict[tuple[int, int, int], WrkResult],
) -> None:
    """Start Triton, then measure every side over HTTP, Triton's targets over gRPC, and the
    fused model's instance / queue-delay sweep."""
    options = ServerOptions(
        repository=repo,
        model_control="explicit",
        models=tuple(TARGETS.values()),
        exit_timeout_s=5,
        extra_args=tuple(args.triton_arg),
    )
    png = images(1)[0, 0]
    body, headers = triton_request(png)
    with TritonServer(options, log_path=folder / "server.log") as server:
        if "http" in sections:
            sides = [
                Peer(label, f"{server.http_url}/v2/models/{model}/infer", body, headers)
                for label, model in TARGETS.items()
            ]
            for side in sides:
                side.pid = server.pid or 0
            if args.together:
                sides += running
                idle.update(_idle_cores(sides))
                http.update(_http_sweep(sides, args.rounds, args.seconds))
            else:
                idle.update(_idle_cores(sides))
                names = [p for p in args.peers.split(",") if p]
                http.update(_http_alone(sides, names, start, args.rounds, args.seconds, idle))
        if "grpc" in sections:
            data = folder / "png.json"
            data.write_text(json.dumps(to_json([{"image": np.array([png], dtype=object)}])))
            for c in CONNECTIONS:
                for label, model in TARGETS.items():
                    grpc[(label, c)] = _grpc(server, model, c, data, folder)
                    print(f"  grpc {label:<8} c={c:<3} {grpc[(label, c)]}", flush=True)
        if "sweep" in sections:
            url = f"{server.http_url}/v2/models/digits/infer"
            for count, delay in ((1, 0), (2, 0), (1, 200), (2, 200), (2, 1000)):
                _reload(server, count, delay)
                for c in CONNECTIONS:
                    result = _measure(url, body, headers, c, args.seconds)
                    delays[(count, delay, c)] = result
                    print(f"  fused count={count} delay={delay} c={c} {result}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk duration per point")
    parser.add_argument("--rounds", type=int, default=2, help="HTTP sweeps, order reversed")
    parser.add_argument("--peers", default="fastapi,bentoml,ray", help="comma-separated peers")
    parser.add_argument(
        "--sections",
        default="inprocess,http,grpc,sweep,options,breakdown",
        help="what to run: inprocess, http, grpc, sweep, options, breakdown",
    )
    parser.add_argument(
        "--triton-arg",
        action="append",
        default=[],
        help="extra tritonserver argument (repeatable), e.g. --http-thread-count=4",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="keep every peer up while any side is measured (default: each peer alone)",
    )
    parser.add_argument("--out", type=Path, default=None, help="Also write Markdown here.")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    machine = describe_machine()
    repo = args.repository.resolve()
    local: dict[str, float] = {}
    if "inprocess" in sections:
        print("in-process runner ...", flush=True)
        local = in_process(repo, args.seconds / 2)
        print(f"  {local}", flush=True)
    png = images(1)[0, 0]
    http: dict[tuple[str, int], Point] = {}
    idle: dict[str, float] = {}
    missing: dict[str, str] = {}
    grpc: dict[tuple[str, int], tuple[float, float, float] | None] = {}
    delays: dict[tuple[int, int, int], WrkResult] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        running: list[Peer] = []
        try:

            def start(label: str) -> Peer | None:
                return _start_peer(label, repo, png, folder, missing)

            if "http" in sections and args.together:
                names = [p for p in args.peers.split(",") if p]
                running = [p for p in map(start, names) if p is not None]
            _triton(args, repo, folder, sections, running, start, http, idle, grpc, delays)
        finally:
            for peer in running:
                peer.stop()
    options = ""
    if "options" in sections:
        print("tritonserver's options (HTTP threads, Python backend shared memory) ...", flush=True)
        measured_options = serving_options.measure(repo, "digits", args.seconds, args.rounds)
        options = serving_options.report(measured_options, "digits", args.seconds, args.rounds)
        print(options, flush=True)
    breakdown = ""
    if "breakdown" in sections:
        print("where the time goes (Triton's trace) ...", flush=True)
        try:  # the figures above are kept whatever happens to this last server
            with tempfile.TemporaryDirectory() as tmp:
                measured = serving_breakdown.measure(
                    repo, "digits", list(CONNECTIONS), args.seconds, 4, Path(tmp)
                )
            breakdown = serving_breakdown.report(measured, "digits", 4)
        except (OSError, TritonPipeError) as exc:
            breakdown = f"Not measured: {type(exc).__name__}: {exc}"
        print(breakdown, flush=True)
    report = _report(
        machine,
        local,
        http,
        idle,
        missing,
        grpc,
        delays,
        args.seconds,
        args.rounds,
        args,
        breakdown,
        options,
    )
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
