"""What shadow scoring costs the answer: the same logging pipeline served three ways side by
side (shadow off, a challenger on 20% of requests, on every request), each by its own
tritonserver, loaded by wrk at 1, 8 and 32 connections. Rounds interleave the three so a change
in the machine's load falls on all of them; medians over rounds, and ratios to shadow off.

    python -m benchmarks.shadow_cost --out benchmarks/results/shadow_cost.md

The pipeline is the churn example of the shadow tests (tests/assets/challenger: a feature stage,
an ONNX scorer, a decision stage, a Parquet prediction log); champion and challenger are models
of the same size, so the challenger's work equals the champion's scoring step and decision.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from tritonpipe.compare.logs import is_shadow
from tritonpipe.ensembles import build_repository
from tritonpipe.perf.machine import describe_machine
from tritonpipe.perf.wrk import WrkResult, run_wrk
from tritonpipe.predlog import read_logs
from tritonpipe.server import ServerOptions, TritonServer

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "tests" / "assets" / "challenger"
CONNECTIONS = (1, 8, 32)
VARIANTS = {"shadow off": None, "sample 0.2": 0.2, "sample 1.0": 1.0}
BODY = json.dumps(
    {
        "inputs": [
            {"name": "usage", "shape": [1, 3], "datatype": "FP64", "data": [0.5, -1.2, 2.0]},
            {"name": "plan", "shape": [1, 1], "datatype": "INT64", "data": [7]},
        ]
    }
).encode()


def prepare(root: Path) -> None:
    """The churn example and both exported versions in ``root``."""
    from tritonpipe.export import export
    from tritonpipe.tensors import parse_input_spec

    shutil.copytree(CHURN, root, dirs_exist_ok=True)
    for name in ("champion", "challenger"):
        export(
            f"{root / 'churn_models.py'}:{name}",
            [parse_input_spec("x:FP32:4")],
            root / f"{name}_export",
            formats=("onnx",),
            max_batch_size=32,
            output_names=["y"],
        )


def build(root: Path, label: str, sample: float | None) -> Path:
    """The repository of one variant; its log goes to its own folder."""
    data: dict[str, Any] = yaml.safe_load((root / "pipeline.yaml").read_text())
    slug = label.replace(" ", "_").replace(".", "")
    scorer = data["models"]["churn_scorer"]
    if sample is None:
        scorer.pop("shadow")
    else:
        scorer["shadow"]["sample"] = sample
    data["ensembles"]["churn"]["log"]["sink"]["path"] = f"logs_{slug}"
    spec = root / f"pipeline_{slug}.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    repository = root / f"repo_{slug}"
    build_repository(spec, repository)
    return repository


def measure(server: TritonServer, connections: int, seconds: float) -> WrkResult:
    url = f"{server.http_url}/v2/models/churn/infer"
    headers = {"Content-Type": "application/json"}
    run_wrk(url, BODY, connections=connections, seconds=1, headers=headers)  # warm up
    result = run_wrk(url, BODY, connections=connections, seconds=seconds, headers=headers)
    if result.errors:
        raise RuntimeError(f"{result.errors} failed requests at {connections} connections")
    return result


def logged(folder: Path) -> tuple[int, int]:
    """(answered records, shadow records) in a variant's prediction log."""
    frame = read_logs(folder)
    shadow = int(is_shadow(frame).sum())
    return len(frame) - shadow, shadow


def table(results: dict[tuple[str, int], list[WrkResult]]) -> list[str]:
    lines = [
        "| connections | shadow | p50 ms | p99 ms | req/s | p50 / off | p99 / off | req/s / off |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in CONNECTIONS:
        base = results[("shadow off", c)]
        b50 = statistics.median(r.p50_us for r in base)
        b99 = statistics.median(r.p99_us for r in base)
        brate = statistics.median(r.throughput for r in base)
        for label in VARIANTS:
            runs = results[(label, c)]
            p50 = statistics.median(r.p50_us for r in runs)
            p99 = statistics.median(r.p99_us for r in runs)
            rate = statistics.median(r.throughput for r in runs)
            lines.append(
                f"| {c} | {label} | {p50 / 1000:.2f} | {p99 / 1000:.2f} | {rate:,.0f} | "
                f"{p50 / b50:.2f} | {p99 / b99:.2f} | {rate / brate:.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as Markdown")
    args = parser.parse_args()
    machine = describe_machine()
    prefix = "tritonpipe-shadow-bench-"
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, ExitStack() as stack:
        root = Path(tmp)
        prepare(root)
        servers = {}
        for label, sample in VARIANTS.items():
            repository = build(root, label, sample)
            options = ServerOptions(repository=repository, exit_timeout_s=10)
            log_path = root / f"{repository.name}.log"
            servers[label] = stack.enter_context(TritonServer(options, log_path=log_path))
        results: dict[tuple[str, int], list[WrkResult]] = {}
        labels = list(VARIANTS)
        for round_ in range(args.rounds):
            for c in CONNECTIONS:
                # The order turns each round: no variant always runs first or last.
                for label in labels[round_ % 3 :] + labels[: round_ % 3]:
                    result = measure(servers[label], c, args.seconds)
                    results.setdefault((label, c), []).append(result)
                    print(
                        f"round {round_ + 1} c={c:>2} {label:<11} p50 {result.p50_us / 1000:6.2f} "
                        f"ms  p99 {result.p99_us / 1000:6.2f} ms  {result.throughput:8,.0f} req/s",
                        flush=True,
                    )
                    time.sleep(1.0)  # a shadow queue left from this load drains here
        load_end = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        stack.close()  # servers stop: each log is flushed
        counts = {
            label: logged(root / f"logs_{label.replace(' ', '_').replace('.', '')}")
            for label in VARIANTS
        }
    lines = table(results)
    print("\n".join(lines))
    shares = [
        f"- {label}: {served:,} answers logged, {shadow:,} shadow records "
        f"({shadow / served:.1%} of answers)"
        for label, (served, shadow) in counts.items()
    ]
    print("\n".join(shares))
    if args.out is not None:
        text = [
            "# Shadow scoring's cost to the answer",
            "",
            "`python -m benchmarks.shadow_cost`: the churn pipeline of the shadow tests (feature",
            "stage, ONNX scorer, decision stage, Parquet prediction log) served by three",
            "tritonservers at once: shadow off, challenger on 20% of requests, on every request.",
            f"wrk over HTTP/JSON, {args.seconds:.0f} s per measurement after 1 s of warm-up,",
            f"{args.rounds} rounds interleaving the three; medians over rounds, ratios to",
            "shadow off.",
            "",
            f"Machine: {machine}; load average {load_end} at the end. The machine is shared",
            "with other work, so absolute figures move between runs; the ratios of one run",
            "are what this measures.",
            "",
            *lines,
            "",
            "What reached the prediction logs (shadow records per answer: the sampled share,",
            "less samples skipped by a full shadow queue):",
            "",
            *shares,
            "",
        ]
        args.out.write_text("\n".join(text))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
