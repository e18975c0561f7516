"""Where a request's time goes in a served Triton model: Triton's own TIMESTAMPS trace, split
into its phases, beside the pipeline's per-step times from tritonpipe's step metrics.

    python -m benchmarks.serving_breakdown --repository model_repository -m digits -c 1 -c 8

For each connection count, wrk sends one PNG per request while Triton traces 1 request in
``--rate`` (``--trace-config triton,file=...``, level TIMESTAMPS); each phase is the median over
the traced requests, so the table adds up to roughly the server-side latency. The model's
compute (COMPUTE_INPUT_END -> COMPUTE_OUTPUT_START) is then split into the pipeline's steps (what
``tritonpipe_step_duration_us_total`` counted, per request) and the rest: the Python backend's
round trip to its stub process and ``model.py``'s own work (reading inputs, building responses).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks.digits_requests import images, triton_request
from benchmarks.peers import cpu_seconds
from tritonpipe.perf.machine import describe_machine
from tritonpipe.perf.wrk import WrkResult, run_wrk
from tritonpipe.server import ServerOptions, TritonServer

# Triton's trace timestamps in the order a request meets them, and what each gap is.
PHASES = (
    ("HTTP_RECV_START", "HTTP_RECV_END", "read the HTTP request"),
    ("HTTP_RECV_END", "REQUEST_START", "parse it, build the inference request"),
    ("REQUEST_START", "QUEUE_START", "hand it to the model's scheduler"),
    ("QUEUE_START", "COMPUTE_START", "wait in the dynamic batcher's queue"),
    ("COMPUTE_START", "COMPUTE_INPUT_END", "copy inputs to the stub's shared memory"),
    ("COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "the model: stub round trip + execute"),
    ("COMPUTE_OUTPUT_START", "COMPUTE_END", "copy outputs back"),
    ("COMPUTE_END", "REQUEST_END", "release the request"),
    ("REQUEST_END", "HTTP_SEND_START", "build the HTTP response"),
    ("HTTP_SEND_START", "HTTP_SEND_END", "send it"),
)
_NO_WRK = WrkResult(throughput=0, p50_us=0, p99_us=0, requests=0, errors=0)
STEP_METRIC = re.compile(r"^(tritonpipe_step_\w+)\{([^}]*)\} ([0-9.e+]+)$", re.M)


@dataclass(frozen=True)
class Breakdown:
    """One connection count: wrk's figures, median microseconds per phase, the steps' mean
    microseconds per execution, requests per execution (the batch the dynamic batcher formed)
    and the server's CPU microseconds per request (its process tree: tritonserver and stubs)."""

    connections: int
    wrk: WrkResult
    traced: int
    phases: dict[str, float]
    steps: dict[str, float]
    batch: float
    cpu_us: float
    failed: str = ""  # why this connection count has no figures (tritonserver crashed)

    @property
    def model_us(self) -> float:
        return self.phases.get("COMPUTE_INPUT_END", 0.0)

    @property
    def outside_steps_us(self) -> float:
        """The model phase less the steps: the stub round trip and model.py's own work."""
        return self.model_us - sum(self.steps.values())


def _step_counters(metrics_url: str) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    found = {}
    for match in STEP_METRIC.finditer(text):
        step = re.search(r'step="([^"]+)"', match.group(2))
        if step:
            found[(match.group(1), step.group(1))] = float(match.group(3))
    return found


def _phases(trace: Path, last: int) -> tuple[int, dict[str, float]]:
    """Median microseconds per phase over the ``last`` requests whose trace has all timestamps
    (Triton writes the file at shutdown, the warm-up's requests first)."""
    text = trace.read_text().strip()
    events = json.loads(text if text.startswith("[") else "[" + text.rstrip(",") + "]")
    stamps: dict[int, dict[str, int]] = {}
    for event in events:
        for ts in event.get("timestamps", []):
            stamps.setdefault(event["id"], {})[ts["name"]] = ts["ns"]
    names = {n for start, end, _ in PHASES for n in (start, end)}
    complete = [stamps[i] for i in sorted(stamps) if names <= stamps[i].keys()][-last:]
    phases = {
        start: statistics.median((s[end] - s[start]) / 1000 for s in complete)
        for start, end, _ in PHASES
        if complete
    }
    return len(complete), phases


def measure(
    repository: Path,
    model: str,
    connections: list[int],
    seconds: float,
    rate: int,
    folder: Path,
    extra: tuple[str, ...] = (),
) -> list[Breakdown]:
    """Serve ``model`` alone with Triton's trace on and measure each connection count."""
    body, headers = triton_request(images(1)[0, 0])
    results = []
    for c in connections:
        trace = folder / f"trace_{c}.json"
        options = ServerOptions(
            repository=repository,
            model_control="explicit",
            models=(model,),
            exit_timeout_s=5,
            extra_args=(
                f"--trace-config=triton,file={trace}",
                "--trace-config=level=TIMESTAMPS",
                f"--trace-config=rate={rate}",
                "--trace-config=count=-1",
                "--trace-config=log_frequency=0",  # the file is written at shutdown
                *extra,
            ),
        )
        log_path = folder / f"server_{c}.log"
        with TritonServer(options, log_path=log_path) as server:
            url = f"{server.http_url}/v2/models/{model}/infer"
            try:
                run_wrk(url, body, connections=c, seconds=2, headers=headers)  # warm up
                time.sleep(1.5)  # the step metrics are flushed every second
                before = _step_counters(server.metrics_url)
                cpu = cpu_seconds(server.pid or 0)
                result = run_wrk(url, body, connections=c, seconds=seconds, headers=headers)
                cpu = cpu_seconds(server.pid or 0) - cpu
                time.sleep(1.5)
                after = _step_counters(server.metrics_url)
            except OSError as exc:
                crashed = "Signal (11)" in log_path.read_text(errors="replace")
                why = "tritonserver crashed (SIGSEGV)" if crashed else f"{exc}"
                results.append(Breakdown(c, _NO_WRK, 0, {}, {}, 0, 0, why))
                continue
        delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
        steps, executions, requests = {}, 0.0, 0.0
        for (name, step), value in delta.items():
            if name == "tritonpipe_step_duration_us_total":
                served = delta.get(("tritonpipe_step_requests_total", step), 0.0)
                runs = delta.get(("tritonpipe_step_executions_total", step), 0.0)
                steps[step] = value / runs if runs else 0.0
                if not executions:
                    executions, requests = runs, served
        if not trace.is_file():  # written at shutdown: a server that crashed there wrote none
            crashed = "Signal (11)" in log_path.read_text(errors="replace")
            why = "tritonserver crashed (SIGSEGV)" if crashed else "tritonserver wrote no trace"
            results.append(Breakdown(c, _NO_WRK, 0, {}, {}, 0, 0, why))
            continue
        traced, phases = _phases(trace, max(1, result.requests // rate))
        batch = requests / executions if executions else 0.0
        cpu_us = cpu * 1e6 / result.requests if result.requests else 0.0
        results.append(Breakdown(c, result, traced, phases, steps, batch, cpu_us))
    return results


def report(results: list[Breakdown], model: str, rate: int) -> str:
    lines = [
        f"### Where the time goes: `{model}` over HTTP (Triton's TIMESTAMPS trace, 1 request "
        f"in {rate} traced; medians per phase, in microseconds)",
        "",
        "| phase | " + " | ".join(f"c={r.connections}" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for start, end, what in PHASES:
        cells = [f"{r.phases.get(start, 0.0):.0f}" for r in results]
        lines.append(f"| {what} ({start} -> {end}) | " + " | ".join(cells) + " |")
    steps = list(dict.fromkeys(s for r in results for s in r.steps))
    for step in steps:
        cells = [f"{r.steps.get(step, 0.0):.0f}" for r in results]
        row = f"| of the model: step `{step}` (mean per execution) | "
        lines.append(row + " | ".join(cells) + " |")
    cells = [f"{r.outside_steps_us:.0f}" for r in results]
    lines.append("| of the model: stub round trip + model.py | " + " | ".join(cells) + " |")
    failed = [r for r in results if r.failed]
    for label, values in (
        ("requests per execution", [f"{r.batch:.2f}" for r in results]),
        ("server CPU us per request", [f"{r.cpu_us:.0f}" for r in results]),
        ("wrk p50 (client)", [f"{r.wrk.p50_us:.0f}" for r in results]),
        ("wrk req/s", [f"{r.wrk.throughput:.0f}" for r in results]),
        ("requests traced", [str(r.traced) for r in results]),
    ):
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    for r in failed:
        lines += ["", f"c={r.connections}: not measured: {r.failed} (its trace on; see the log)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("-m", "--model", default="digits")
    parser.add_argument("-c", "--connections", type=int, action="append", default=[])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=4, help="trace 1 request in this many")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--triton-arg", action="append", default=[], help="extra tritonserver arg")
    parser.add_argument("--logs", type=Path, default=None, help="keep server logs and traces")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.logs or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = measure(
            args.repository.resolve(),
            args.model,
            args.connections or [1, 8],
            args.seconds,
            args.rate,
            folder,
            tuple(args.triton_arg),
        )
    text = f"Machine: {describe_machine()}\n\n" + report(results, args.model, args.rate)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
