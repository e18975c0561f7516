"""Serving benchmark: the digits pipeline four ways, on one machine, in one run.

    python -m benchmarks.serving --repository model_repository \
        --out benchmarks/results/serving.md

1. in-process: ``tritonpipe.pipeline.Pipeline`` called directly (no network): per-call time at
   batch 1, and batched throughput at batch 64 on one core and on every core (one process each);
2. the unfused ensemble (``digits_steps``: one Triton model per step, a process hop per step);
3. the fused model (``digits``: the same steps in one Python-backend model);
4. FastAPI + onnxruntime (uvicorn, one worker per core) running the same stage functions and
   ONNX file: the server users write themselves.
HTTP load comes from wrk (one PNG per request; Triton's binary tensor protocol) for all three
servers; gRPC load from perf_analyzer for the two Triton targets. Then the fused model's queue
delay and instance count are varied through explicit model control (a config override) at 1 and
32 connections. Prints each table with its ratios and writes Markdown with the machine described.
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
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton_http

from tritonpipe.perf.input_data import to_json
from tritonpipe.perf.machine import describe_machine
from tritonpipe.perf.results_csv import read_csv
from tritonpipe.perf.wrk import WrkResult, run_wrk
from tritonpipe.pipeline import Pipeline
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.options import free_port

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
HELDOUT = DIGITS / "artifacts" / "heldout"
CONNECTIONS = (1, 8, 32)
TARGETS = {"unfused": "digits_steps", "fused": "digits"}


def _triton_request(png: bytes) -> tuple[bytes, dict[str, str]]:
    tensor = triton_http.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[png]], dtype=object), binary_data=True)
    outputs = [
        triton_http.InferRequestedOutput(n, binary_data=True) for n in ("labels", "probabilities")
    ]
    body, json_size = triton_http.InferenceServerClient.generate_request_body([tensor], outputs)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return body, headers


def _batched_loop(repository: str, seconds: float, queue: Any) -> None:
    pipe = Pipeline.load(repository, "digits", threads=1)
    images = _images(64)
    pipe({"image": images})
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pipe({"image": images})
        done += len(images)
    queue.put(done / (time.perf_counter() - start))


def _images(n: int) -> np.ndarray[Any, Any]:
    files = sorted(HELDOUT.glob("*.png"))
    return np.array([[files[i % len(files)].read_bytes()] for i in range(n)], dtype=object)


def in_process(repository: Path, seconds: float) -> dict[str, float]:
    """Per-call time at batch 1 (median), and images/s at batch 64 on one and on every core."""
    pipe = Pipeline.load(repository, "digits", threads=1)
    one = _images(1)
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


def _start_fastapi(port: int, onnx: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRITONPIPE_STAGES": str(DIGITS / "stages.py"),
        "TRITONPIPE_ONNX": str(onnx),
    }
    command = [sys.executable, "-m", "uvicorn", "benchmarks.fastapi_baseline:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(os.cpu_count() or 1)]
    command += ["--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, env=env)
    png = _images(1)[0, 0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=png)
            urllib.request.urlopen(request, timeout=2).read()
            return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the FastAPI baseline did not start")


def _measure(url: str, body: bytes, headers: dict[str, str], c: int, seconds: float) -> WrkResult:
    run_wrk(url, body, connections=c, seconds=1, headers=headers)  # warm up
    result = run_wrk(url, body, connections=c, seconds=seconds, headers=headers)
    if result.errors:
        raise RuntimeError(f"{url}: {result.errors} failed requests at {c} connections")
    return result


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


def _head(*columns: str) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _row(label: str, values: list[str]) -> str:
    return "| " + " | ".join([label, *values]) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk duration per point")
    parser.add_argument("--out", type=Path, default=None, help="Also write Markdown here.")
    args = parser.parse_args()
    machine = describe_machine()
    repo = args.repository.resolve()
    print("in-process runner ...", flush=True)
    local = in_process(repo, args.seconds / 2)
    print(f"  {local}", flush=True)
    png = _images(1)[0, 0]
    body, headers = _triton_request(png)
    http: dict[tuple[str, int], WrkResult] = {}
    grpc: dict[tuple[str, int], tuple[float, float, float] | None] = {}
    delays: dict[tuple[int, int, int], WrkResult] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        options = ServerOptions(
            repository=repo,
            model_control="explicit",
            models=tuple(TARGETS.values()),
            exit_timeout_s=5,
        )
        port = free_port()
        fastapi = _start_fastapi(port, repo / "digits_onnx" / "1" / "model.onnx")
        try:
            with TritonServer(options, log_path=folder / "server.log") as server:
                for c in CONNECTIONS:
                    for label, model in TARGETS.items():
                        url = f"{server.http_url}/v2/models/{model}/infer"
                        http[(label, c)] = _measure(url, body, headers, c, args.seconds)
                        print(f"  http {label:<8} c={c:<3} {http[(label, c)]}", flush=True)
                    url = f"http://127.0.0.1:{port}/predict"
                    http[("fastapi", c)] = _measure(url, png, {}, c, args.seconds)
                    print(f"  http fastapi  c={c:<3} {http[('fastapi', c)]}", flush=True)
                data = folder / "png.json"
                data.write_text(json.dumps(to_json([{"image": np.array([png], dtype=object)}])))
                for c in CONNECTIONS:
                    for label, model in TARGETS.items():
                        grpc[(label, c)] = _grpc(server, model, c, data, folder)
                        print(f"  grpc {label:<8} c={c:<3} {grpc[(label, c)]}", flush=True)
                url = f"{server.http_url}/v2/models/digits/infer"
                for count, delay in ((1, 0), (2, 0), (2, 200), (2, 1000)):
                    _reload(server, count, delay)
                    for c in (1, 32):
                        delays[(count, delay, c)] = _measure(url, body, headers, c, args.seconds)
                        result = delays[(count, delay, c)]
                        print(f"  fused count={count} delay={delay} c={c} {result}", flush=True)
        finally:
            fastapi.terminate()
            fastapi.wait(10)
    report = _report(machine, local, http, grpc, delays, args.seconds)
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


def _report(
    machine: str,
    local: dict[str, float],
    http: dict[tuple[str, int], WrkResult],
    grpc: dict[tuple[str, int], tuple[float, float, float] | None],
    delays: dict[tuple[int, int, int], WrkResult],
    seconds: float,
) -> str:
    cores = os.cpu_count() or 1
    lines = [
        "# Serving the digits pipeline: fused, unfused, in-process and FastAPI",
        "",
        f"Machine: {machine}.",
        "",
        f"Command: `make bench-serving` (`python -m benchmarks.serving`), {seconds:g} s "
        "per point after a 1 s warm-up, one PNG per request, one run.",
        "",
        "## In-process runner (no server, one intra-op thread per process)",
        "",
        f"- per call at batch 1: median {local['per_call_us']:.0f} us",
        f"- batch 64, one process: {local['batch64_1proc']:.0f} images/s",
        f"- batch 64, one process per core: {local[f'batch64_{cores}proc']:.0f} images/s",
        "",
        "## HTTP (wrk, binary tensors for Triton, raw PNG body for FastAPI)",
        "",
        *_head(
            "connections",
            *("unfused req/s", "fused req/s", "FastAPI req/s", "fused/unfused", "fused/FastAPI"),
            *("p50 ms unfused", "p50 ms fused", "p50 ms FastAPI"),
            *("p99 ms unfused", "p99 ms fused", "p99 ms FastAPI"),
        ),
    ]
    for c in CONNECTIONS:
        u, f, a = http[("unfused", c)], http[("fused", c)], http[("fastapi", c)]
        lines.append(
            _row(
                str(c),
                [f"{u.throughput:.0f}", f"{f.throughput:.0f}", f"{a.throughput:.0f}"]
                + [f"{f.throughput / u.throughput:.2f}", f"{f.throughput / a.throughput:.2f}"]
                + [f"{r.p50_us / 1000:.2f}" for r in (u, f, a)]
                + [f"{r.p99_us / 1000:.2f}" for r in (u, f, a)],
            )
        )
    lines += [
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
                + [
                    f"{u3[1] / 1000:.2f}",
                    f"{f3[1] / 1000:.2f}",
                    f"{u3[2] / 1000:.2f}",
                    f"{f3[2] / 1000:.2f}",
                ],
            )
        )
    lines += [
        "",
        "## Fused model: instances and queue delay (HTTP, wrk)",
        "",
        *_head(
            *("instances", "max_queue_delay_us", "req/s at 1", "p50 ms at 1"),
            *("req/s at 32", "p50 ms at 32", "p99 ms at 32"),
        ),
    ]
    for count, delay in sorted({(k[0], k[1]) for k in delays}):
        one, many = delays[(count, delay, 1)], delays[(count, delay, 32)]
        lines.append(
            _row(
                str(count),
                [str(delay), f"{one.throughput:.0f}", f"{one.p50_us / 1000:.2f}"]
                + [
                    f"{many.throughput:.0f}",
                    f"{many.p50_us / 1000:.2f}",
                    f"{many.p99_us / 1000:.2f}",
                ],
            )
        )
    limit = local[f"batch64_{cores}proc"]
    f1, f8, f32 = (http[("fused", c)] for c in CONNECTIONS)
    checks = [
        (
            "fused >= 2.5x unfused at 8 connections",
            f8.throughput / http[("unfused", 8)].throughput,
            2.5,
        ),
        (
            "fused >= 2.5x unfused at 32 connections",
            f32.throughput / http[("unfused", 32)].throughput,
            2.5,
        ),
        (
            "fused >= 1.1x FastAPI at 8 connections",
            f8.throughput / http[("fastapi", 8)].throughput,
            1.1,
        ),
        (
            "fused >= 1.5x FastAPI at 32 connections",
            f32.throughput / http[("fastapi", 32)].throughput,
            1.5,
        ),
        ("served at 32 >= 30% of in-process batched (all cores)", f32.throughput / limit, 0.30),
    ]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for name, value, floor in checks:
        lines.append(f"| {name} | {value:.2f} | {'yes' if value >= floor else 'no'} |")
    gap = f1.p50_us / 1000 - local["per_call_us"] / 1000
    lines.append(
        f"| fused p50 at 1 connection within 0.5 ms of in-process per call | +{gap:.2f} ms "
        f"| {'yes' if gap <= 0.5 else 'no'} |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
