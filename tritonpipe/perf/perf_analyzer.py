"""Run NVIDIA's perf_analyzer (from tritonclient[all]) with the same options and read its CSV, so
both engines feed the same reports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tritonpipe.client.protocol import Endpoint
from tritonpipe.errors import PerfError
from tritonpipe.perf.generator import LevelResult, ProfileOptions
from tritonpipe.perf.results_csv import ResultRow, read_csv
from tritonpipe.server.options import TOKEN_HEADER

_BLOCK = re.compile(r"^(?:Request concurrency|Request Rate): ([\d.]+)", re.M)
_COMPOSING = re.compile(
    r"^\s+(\S+), version: \S*\n(?:.*\n)*?\s+Avg request latency: \d+ usec \(overhead \d+ usec \+ "
    r"queue (\d+) usec \+ compute input (\d+) usec \+ compute infer (\d+) usec \+ "
    r"compute output (\d+) usec\)",
    re.M,
)


def find_perf_analyzer() -> tuple[Path, dict[str, str]]:
    """The binary and an environment in which its shared libraries load."""
    found = Path(sys.executable).with_name("perf_analyzer")
    binary = found if found.is_file() else Path(shutil.which("perf_analyzer") or "")
    if not binary.is_file():
        raise PerfError("perf_analyzer not found: install tritonclient[all]==2.51.0 (make setup)")
    env = dict(os.environ)
    try:
        import nvidia.cuda_runtime as cudart  # libcudart.so.12, which perf_analyzer links

        lib = Path(next(iter(cudart.__path__))) / "lib"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(lib), env.get("LD_LIBRARY_PATH")])
        )
    except ImportError:
        pass
    return binary, env


def arguments(options: ProfileOptions, csv: Path) -> list[str]:
    endpoint = Endpoint.parse(options.url, options.protocol)
    args = [
        "-m",
        options.model,
        "-u",
        endpoint.address,
        "-i",
        endpoint.protocol,
        "-b",
        str(options.batch_size),
        "--measurement-interval",
        str(options.measurement_interval_ms),
        "--stability-percentage",
        f"{options.stability_percentage:g}",
        "--max-trials",
        str(options.max_trials),
        "--input-data",
        options.input_data,
        "--shared-memory",
        options.shared_memory,
        "-f",
        str(csv),
    ]
    loads = options.loads
    step = loads[1] - loads[0] if len(loads) > 1 else 1
    span = f"{loads[0]:g}:{loads[-1]:g}:{step:g}"
    if options.mode == "concurrency":
        args += ["--concurrency-range", span]
    else:
        args += ["--request-rate-range", span, "--request-distribution", options.distribution]
    if options.percentile is not None:
        args += ["--percentile", str(options.percentile)]
    for name, dims in options.shapes.items():
        args += ["--shape", f"{name}:{','.join(map(str, dims))}"]
    if options.token:
        key = (
            TOKEN_HEADER if endpoint.protocol == "http" else f"triton-grpc-protocol-{TOKEN_HEADER}"
        )
        args += ["-H", f"{key}:{options.token}"]
    return args


def _composing(stdout: str) -> dict[float, dict[str, tuple[int, int, int, int]]]:
    """Per load level, the composing models' server times that perf_analyzer prints."""
    result: dict[float, dict[str, tuple[int, int, int, int]]] = {}
    marks = list(_BLOCK.finditer(stdout))
    for i, mark in enumerate(marks):
        block = stdout[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else len(stdout)]
        if "Composing models:" in block:
            part = block.split("Composing models:", 1)[1]
            result[float(mark[1])] = {
                m[1]: (int(m[2]), int(m[3]), int(m[4]), int(m[5]))
                for m in _COMPOSING.finditer(part)
            }
    return result


def run(
    options: ProfileOptions,
    csv: Path,
    progress: Callable[[str], None] = lambda _: None,
    timeout_s: float = 3600,
) -> list[LevelResult]:
    binary, env = find_perf_analyzer()
    command = [str(binary), *arguments(options, csv)]
    progress("running " + " ".join(command))
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise PerfError(f"perf_analyzer did not finish within {timeout_s:.0f}s") from None
    if done.returncode != 0 or not csv.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise PerfError(f"perf_analyzer failed (exit {done.returncode}):\n{tail}")
    _, rows = read_csv(csv)
    composing = _composing(done.stdout)
    results = []
    for row in rows:
        parts = {
            name: ResultRow(
                load=row.load,
                throughput=row.throughput,
                client_send_us=0,
                network_us=0,
                server_queue_us=q,
                server_input_us=ci,
                server_infer_us=cf,
                server_output_us=co,
                client_recv_us=0,
                p50_us=0,
                p90_us=0,
                p95_us=0,
                p99_us=0,
            )
            for name, (q, ci, cf, co) in composing.get(row.load, {}).items()
        }
        results.append(LevelResult(row, parts, True, 0, 0, None))
    return results
