"""Benchmark tritonpipe's load generator against the real perf_analyzer, on one server, in one run.

    python -m benchmarks.generator_vs_perf_analyzer --repository model_repository --repeat 3 \
        --out benchmarks/results/generator_vs_perf_analyzer.md

Profiles the digits ensemble (PNG input data) and its ONNX scoring model alone at concurrency
1, 4 and 16 with both engines, alternating which goes first. Each engine runs as a child process,
so its CPU time is measured the same way (getrusage of children) and divided by the requests the
server counted for the run. Prints medians over the repeats side by side with their ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonpipe.client import Client
from tritonpipe.perf.input_data import to_json
from tritonpipe.perf.machine import describe_machine
from tritonpipe.perf.results_csv import read_csv
from tritonpipe.server import ServerOptions, TritonServer

HELDOUT = Path(__file__).resolve().parents[1] / "examples" / "digits" / "artifacts" / "heldout"
ENGINES = ("tritonpipe", "perf_analyzer")


@dataclass(frozen=True)
class Measure:
    throughput: float
    p50_us: int
    p99_us: int
    cpu_per_1k: float


def _served(client: Client, model: str) -> int:
    stats = client.statistics(model)["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"])


def _run(
    protocol: str,
    engine: str,
    model: str,
    concurrency: int,
    data: str,
    url: str,
    args: argparse.Namespace,
    folder: Path,
    client: Client,
) -> Measure | None:
    """One profile in a child process; None (with the reason printed) when it failed."""
    csv = folder / f"{engine}_{model}_{concurrency}_{protocol}.csv"
    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = _served(client, model)
    command = [sys.executable, "-m", "tritonpipe.cli", "perf", "profile", "-m", model, "-u", url]
    command += ["-i", protocol, "--concurrency-range", str(concurrency)]
    command += ["-p", str(args.interval_ms), "--max-trials", str(args.max_trials)]
    command += ["--stability-percentage", str(args.stability), "--input-data", data]
    command += ["-f", str(csv), "--engine", engine]
    if engine == "tritonpipe":
        command += ["--transport", args.transport]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {engine} {model} c={concurrency} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    after_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = _served(client, model) - before
    cpu = (after_cpu.ru_utime - before_cpu.ru_utime) + (after_cpu.ru_stime - before_cpu.ru_stime)
    row = read_csv(csv)[1][0]
    return Measure(row.throughput, row.p50_us, row.p99_us, cpu / max(requests, 1) * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument(
        "--protocol", choices=["http", "grpc"], nargs="+", default=["http"], help="One or both."
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--interval-ms", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stability", type=float, default=15.0, help="--stability-percentage")
    parser.add_argument("--max-trials", type=int, default=15)
    parser.add_argument(
        "--transport",
        choices=["tritonclient", "raw"],
        default="raw",
        help="tritonpipe engine's transport (raw: prebuilt requests, on HTTP and gRPC)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Also write the results as Markdown."
    )
    args = parser.parse_args()

    machine = describe_machine()  # the load average before the run
    truth = json.loads((HELDOUT / "labels.json").read_text())
    pngs = [np.array([(HELDOUT / n).read_bytes()], dtype=object) for n in sorted(truth)[:64]]
    with (
        tempfile.TemporaryDirectory() as tmp,
        TritonServer(
            ServerOptions(repository=args.repository, exit_timeout_s=5),
            log_path=Path(tmp) / "server.log",
        ) as server,
    ):
        folder = Path(tmp)
        data = folder / "pngs.json"
        data.write_text(json.dumps(to_json([{"image": p} for p in pngs])))
        urls = {"http": server.http_url.split("://")[1], "grpc": server.grpc_url.split("://")[1]}
        targets = {"digits": str(data), "digits_onnx": "random"}
        results: dict[tuple[str, str, int, str], list[Measure]] = {}
        with Client(server.http_url) as client:
            for rep in range(args.repeat):
                for protocol, (model, source), c in itertools.product(
                    args.protocol, targets.items(), args.concurrency
                ):
                    order = ENGINES if (rep + c) % 2 == 0 else ENGINES[::-1]
                    for engine in order:
                        url = urls[protocol]
                        m = _run(protocol, engine, model, c, source, url, args, folder, client)
                        if m is None:
                            continue
                        results.setdefault((protocol, model, c, engine), []).append(m)
                        print(
                            f"[{rep + 1}/{args.repeat}] {protocol:<4} {model:<12} c={c:<3} "
                            f"{engine:<14} "
                            f"{m.throughput:8.1f} infer/s  p50 {m.p50_us:6d} us  "
                            f"p99 {m.p99_us:6d} us  cpu {m.cpu_per_1k:5.2f} s/1k",
                            flush=True,
                        )
    table = _table(results, args.protocol, targets, args.concurrency)
    print("\n" + table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            f"# tritonpipe's generator against perf_analyzer\n\nMachine: {machine}.\n\n"
            f"Command: `python -m benchmarks.generator_vs_perf_analyzer --protocol "
            f"{' '.join(args.protocol)} --concurrency {' '.join(map(str, args.concurrency))} "
            f"--repeat {args.repeat} --interval-ms {args.interval_ms} "
            f"--stability {args.stability:g} --max-trials {args.max_trials} "
            f"--transport {args.transport}`; medians over "
            f"{args.repeat} repeats; ratio = tritonpipe / perf_analyzer. Targets: throughput "
            f"within 10%, p50 within 15%. Load average at the end: "
            f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.\n\n{table}\n"
        )
    return 0


def _median(values: list[Measure], attr: str) -> float:
    return float(statistics.median(getattr(v, attr) for v in values))


def _table(
    results: dict[tuple[str, str, int, str], list[Measure]],
    protocols: list[str],
    targets: dict[str, str],
    concurrency: list[int],
) -> str:
    head = (
        "| protocol | model | c | infer/s tp | infer/s pa | ratio | p50 us tp | p50 us pa | ratio "
        "| "
        "p99 us tp | p99 us pa | ratio | CPU s/1k tp | CPU s/1k pa | ratio |"
    )
    lines = [head, "|" + "---|" * 15]
    for protocol, model, c in itertools.product(protocols, targets, concurrency):
        tp = results.get((protocol, model, c, "tritonpipe"))
        pa = results.get((protocol, model, c, "perf_analyzer"))
        cells = [protocol, model, str(c)]
        if not tp or not pa:
            lines.append("| " + " | ".join(cells + ["no stable run"] + [""] * 11) + " |")
            continue
        for attr, fmt in (
            ("throughput", "{:.1f}"),
            ("p50_us", "{:.0f}"),
            ("p99_us", "{:.0f}"),
            ("cpu_per_1k", "{:.2f}"),
        ):
            a, b = _median(tp, attr), _median(pa, attr)
            cells += [fmt.format(a), fmt.format(b), f"{a / b:.2f}" if b else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
