"""The generator's client CPU per gRPC request: grpcio's blocking call path against the
project's HTTP/2 transport (tritonpipe/client/raw_h2.py), in one process, alternating.

    python -m benchmarks.grpc_transports --out benchmarks/results/grpc_transports.md

Both send the same prebuilt ModelInferRequest to digits_onnx from ``--concurrency`` threads for
``--seconds`` each; the CPU is the process's (every thread, grpcio's own included) over the
requests completed."""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from tritonpipe.client import raw_grpc
from tritonpipe.client.raw_grpc import CHANNEL_OPTIONS, INFER_METHOD
from tritonpipe.client.raw_h2 import BlockingH2Grpc
from tritonpipe.perf.machine import describe_machine
from tritonpipe.server import ServerOptions, TritonServer

Call = Callable[[bytes], object]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load(call: Call, request: bytes, threads: int, seconds: float) -> tuple[float, float]:
    """(requests/s, CPU microseconds per request) with ``threads`` calling in a loop."""
    count = [0] * threads
    halt = threading.Event()

    def work(i: int) -> None:
        while not halt.is_set():
            call(request)
            count[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start, cpu = time.perf_counter(), _cpu()
    for w in workers:
        w.start()
    time.sleep(seconds)
    halt.set()
    for w in workers:
        w.join()
    wall, used, done = time.perf_counter() - start, _cpu() - cpu, sum(count)
    return done / wall, used / max(done, 1) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    machine = describe_machine()
    pixels = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    request = raw_grpc.build_request("digits_onnx", {"pixels": pixels}, {"pixels": "FP32"}, [])
    results: dict[str, list[tuple[float, float]]] = {"grpcio": [], "raw_h2": []}
    options = ServerOptions(
        repository=args.repository,
        model_control="explicit",
        models=("digits_onnx",),
        exit_timeout_s=5,
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        TritonServer(options, log_path=Path(tmp) / "s.log") as server,
    ):
        address = server.grpc_url.split("://")[1]
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        transports: dict[str, Call] = {
            "grpcio": channel.unary_unary(INFER_METHOD),
            "raw_h2": BlockingH2Grpc(address, 30.0).infer,
        }
        for call in transports.values():
            call(request)  # connected before the clock starts
        for rep in range(args.repeat):
            for name in list(transports)[:: 1 if rep % 2 == 0 else -1]:
                rate, cpu = _load(transports[name], request, args.concurrency, args.seconds)
                results[name].append((rate, cpu))
                print(f"[{rep + 1}] {name:<7} {rate:7.0f} infer/s  {cpu:5.0f} us CPU/request")
        channel.close()
    lines = [
        "# The generator's client CPU per gRPC request: grpcio against raw_h2",
        "",
        f"Machine: {machine}. Command: `python -m benchmarks.grpc_transports --concurrency "
        f"{args.concurrency} --seconds {args.seconds:g} --repeat {args.repeat}` (digits_onnx, "
        "one row per request, the same prebuilt bytes; medians over the repeats, alternating).",
        "",
        "| transport | infer/s | client CPU us/request |",
        "|---|---|---|",
    ]
    for name, rows in results.items():
        rate = statistics.median(r for r, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        lines.append(f"| {name} | {rate:.0f} | {cpu:.0f} |")
    ratio = statistics.median(c for _, c in results["raw_h2"]) / statistics.median(
        c for _, c in results["grpcio"]
    )
    lines += ["", f"raw_h2 / grpcio client CPU: {ratio:.2f}.", ""]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
