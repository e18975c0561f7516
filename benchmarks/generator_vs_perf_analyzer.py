"""Benchmark tritonpipe's load generator against the real perf_analyzer, on one server, in one run.

    python -m benchmarks.generator_vs_perf_analyzer --repository model_repository --repeat 3 \
        --out benchmarks/results/generator_vs_perf_analyzer.md

Profiles the fused digits model (PNG input data) and its ONNX scoring model alone at
concurrency 1, 4 and 16 with both engines, alternating which goes first. Both engines read the
same input-data file: the held-out PNGs for digits, and seeded pixels in [0, 1) for digits_onnx
(``--onnx-data random`` instead lets each engine make its own: perf_analyzer's are random bytes,
the generator's floats in [0, 1)). Each engine runs as a child process, so its CPU time is
measured the same way (getrusage of children) and divided by the requests the server counted
for the run; the server's CPU (tritonserver and its stubs) is measured over the same span.

On a 2-core machine the client and the server compete for the cores, and the kernel shares
them by thread count, not by engine: ``--server-cpus 1 --client-cpus 0`` starts tritonserver
on CPU 1 and runs either engine on CPU 0, so both get the same CPU. ``--unpinned-too`` then
repeats everything on a server started without pinning, for comparison in the same run.
Prints medians over the repeats side by side with their ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
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
import psutil

from tritonpipe.client import Client
from tritonpipe.errors import PerfError, TritonPipeError
from tritonpipe.perf.affinity import format_cpus, parse_cpus, pin_tree
from tritonpipe.perf.input_data import to_json
from tritonpipe.perf.machine import describe_machine, tree_cpu_s
from tritonpipe.perf.results_csv import read_csv
from tritonpipe.server import ServerOptions, TritonServer

HELDOUT = Path(__file__).resolve().parents[1] / "examples" / "digits" / "artifacts" / "heldout"
ENGINES = ("tritonpipe", "perf_analyzer")


@dataclass(frozen=True)
class Measure:
    throughput: float
    p50_us: int
    p99_us: int
    cpu_per_1k: float  # the client's CPU seconds per 1,000 requests the server counted
    server_cpu_per_1k: float
    repeat: int = 0  # which repeat: the two engines of one repeat ran back to back


@dataclass(frozen=True)
class Setting:
    """Where the server and the clients run: CPU sets, or None for anywhere."""

    name: str
    server_cpus: frozenset[int] | None
    client_cpus: frozenset[int] | None

    def describe(self) -> str:
        if self.server_cpus is None and self.client_cpus is None:
            return f"{self.name}: server and clients on any CPU"
        where = [
            f"{side} on CPU {format_cpus(cpus)}"
            for side, cpus in (("server", self.server_cpus), ("clients", self.client_cpus))
            if cpus is not None
        ]
        return f"{self.name}: " + ", ".join(where)


def pixels(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``count`` seeded FP32[1,8,8] samples in [0, 1): one file feeds both engines."""
    rng = np.random.default_rng(seed)
    return [{"pixels": rng.random((1, 8, 8), dtype=np.float32)} for _ in range(count)]


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True)
    return done.stdout.strip() or "uptime: unavailable"


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
    server: TritonServer,
    server_cpus: frozenset[int] | None,
    client_cpus: frozenset[int] | None,
) -> Measure | None:
    """One profile in a child process; None (with the reason printed) when it failed."""
    csv = folder / f"{engine}_{model}_{concurrency}_{protocol}.csv"
    try:
        server.wait_ready(120)  # after a crash, the supervisor's restart
        before = _served(client, model)
    except TritonPipeError as exc:
        print(f"  {engine} {model} c={concurrency} skipped: server not ready ({exc})")
        return None
    server_pid = server.pid
    assert server_pid is not None
    if server_cpus is not None:  # tritonserver and its stubs; again after a restart
        pin_tree(server_pid, server_cpus)
    restarts = server.restarts
    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = tree_cpu_s(server_pid)
    command = [sys.executable, "-m", "tritonpipe.cli", "perf", "profile", "-m", model, "-u", url]
    command += ["-i", protocol, "--concurrency-range", str(concurrency)]
    command += ["-p", str(args.interval_ms), "--max-trials", str(args.max_trials)]
    command += ["--stability-percentage", str(args.stability), "--input-data", data]
    command += ["-f", str(csv), "--engine", engine]
    if engine == "tritonpipe":
        command += ["--transport", args.transport]
    if client_cpus is not None:
        command += ["--client-cpus", format_cpus(client_cpus)]  # perf_analyzer inherits them
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {engine} {model} c={concurrency} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    after_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        if server.restarts != restarts:
            raise PerfError("the server restarted during the run")
        server_cpu = tree_cpu_s(server_pid) - before_server
        requests = max(_served(client, model) - before, 1)
    except (TritonPipeError, psutil.Error) as exc:
        print(f"  {engine} {model} c={concurrency} dropped: {exc}")
        return None
    cpu = (after_cpu.ru_utime - before_cpu.ru_utime) + (after_cpu.ru_stime - before_cpu.ru_stime)
    row = read_csv(csv)[1][0]
    return Measure(
        row.throughput,
        row.p50_us,
        row.p99_us,
        cpu / requests * 1000,
        server_cpu / requests * 1000,
    )


Key = tuple[str, str, str, int, str]  # setting, protocol, model, concurrency, engine


def _settings(args: argparse.Namespace) -> list[Setting]:
    try:
        server = parse_cpus(args.server_cpus, "--server-cpus") if args.server_cpus else None
        client = parse_cpus(args.client_cpus, "--client-cpus") if args.client_cpus else None
    except PerfError as exc:
        raise SystemExit(f"error: {exc}") from None
    if server is None and client is None:
        return [Setting("unpinned", None, None)]
    first = [Setting("pinned", server, client)]
    return first + ([Setting("unpinned", None, None)] if args.unpinned_too else [])


def _measure(
    setting: Setting,
    args: argparse.Namespace,
    folder: Path,
    targets: dict[str, str],
    results: dict[Key, list[Measure]],
) -> int:
    """Every repeat of every (protocol, model, concurrency, engine) on one server; returns how
    often the server was restarted (it died) meanwhile."""
    server = TritonServer(
        ServerOptions(repository=args.repository, exit_timeout_s=5),
        log_path=folder / f"server_{setting.name}.log",
    )
    server.start()
    try:
        _measure_on(server, setting, args, folder, targets, results)
    finally:
        server.stop()
    return server.restarts


def _measure_on(
    server: TritonServer,
    setting: Setting,
    args: argparse.Namespace,
    folder: Path,
    targets: dict[str, str],
    results: dict[Key, list[Measure]],
) -> None:
    with Client(server.http_url) as client:
        pid = server.pid
        assert pid is not None
        urls = {"http": server.http_url.split("://")[1], "grpc": server.grpc_url.split("://")[1]}
        if setting.server_cpus is not None:
            pin_tree(pid, setting.server_cpus)
        on = format_cpus(os.sched_getaffinity(pid))
        print(f"== {setting.describe()} (server pid {pid}, on CPUs {on})", flush=True)
        for rep in range(args.repeat):
            for protocol, (model, source), c in itertools.product(
                args.protocol, targets.items(), args.concurrency
            ):
                order = ENGINES if (rep + c) % 2 == 0 else ENGINES[::-1]
                for engine in order:
                    m = _run(
                        protocol,
                        engine,
                        model,
                        c,
                        source,
                        urls[protocol],
                        args,
                        folder,
                        client,
                        server,
                        setting.server_cpus,
                        setting.client_cpus,
                    )
                    if m is None:
                        continue
                    m = dataclasses.replace(m, repeat=rep)
                    results.setdefault((setting.name, protocol, model, c, engine), []).append(m)
                    print(
                        f"[{rep + 1}/{args.repeat}] {setting.name:<8} {protocol:<4} "
                        f"{model:<12} c={c:<3} {engine:<14} "
                        f"{m.throughput:8.1f} infer/s  p50 {m.p50_us:6d} us  "
                        f"p99 {m.p99_us:6d} us  cpu {m.cpu_per_1k:5.2f} s/1k  "
                        f"server {m.server_cpu_per_1k:5.2f} s/1k",
                        flush=True,
                    )


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
        "--onnx-data",
        choices=["pixels", "random"],
        default="pixels",
        help="digits_onnx's input: one file of seeded pixels for both engines, or each "
        "engine's own random data (perf_analyzer: random bytes; the generator: [0, 1))",
    )
    parser.add_argument("--server-cpus", help="Start tritonserver on these CPUs (e.g. 1).")
    parser.add_argument(
        "--client-cpus", help="Run both engines on these CPUs (e.g. 0): perf profile --client-cpus"
    )
    parser.add_argument(
        "--unpinned-too",
        action="store_true",
        help="After the pinned run, measure again on a server started without pinning.",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Also write the results as Markdown."
    )
    args = parser.parse_args()
    settings = _settings(args)

    machine = describe_machine()  # the load average before the run
    before = uptime()
    truth = json.loads((HELDOUT / "labels.json").read_text())
    pngs = [np.array([(HELDOUT / n).read_bytes()], dtype=object) for n in sorted(truth)[:64]]
    results: dict[Key, list[Measure]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "pngs.json"
        data.write_text(json.dumps(to_json([{"image": p} for p in pngs])))
        onnx = "random"
        if args.onnx_data == "pixels":
            (folder / "pixels.json").write_text(json.dumps(to_json(pixels(64))))
            onnx = str(folder / "pixels.json")
        targets = {"digits": str(data), "digits_onnx": onnx}
        restarts = {s.name: _measure(s, args, folder, targets, results) for s in settings}
    after = uptime()
    table = _table(results, [s.name for s in settings], args.protocol, targets, args.concurrency)
    print(f"\nbefore: {before}\nafter:  {after}\n\n{table}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pins = ""
        if args.server_cpus or args.client_cpus:
            pins = f" --server-cpus {args.server_cpus} --client-cpus {args.client_cpus}"
            pins += " --unpinned-too" if args.unpinned_too else ""
        data_text = (
            "the held-out PNGs (digits) and 64 seeded FP32[1,8,8] samples in [0, 1) "
            "(digits_onnx), one perf_analyzer --input-data file per model read by both engines"
            if args.onnx_data == "pixels"
            else "the held-out PNGs (digits); each engine's own random data (digits_onnx)"
        )
        args.out.write_text(
            f"# tritonpipe's generator against perf_analyzer\n\nMachine: {machine}.\n\n"
            f"Command: `python -m benchmarks.generator_vs_perf_analyzer --protocol "
            f"{' '.join(args.protocol)} --concurrency {' '.join(map(str, args.concurrency))} "
            f"--repeat {args.repeat} --interval-ms {args.interval_ms} "
            f"--stability {args.stability:g} --max-trials {args.max_trials} "
            f"--transport {args.transport} --onnx-data {args.onnx_data}{pins}`; medians over "
            f"{args.repeat} repeats; ratio = tritonpipe / perf_analyzer. Targets: throughput "
            f"within 10%, p50 within 15%. Data: {data_text}.\n\n"
            + "".join(f"- {s.describe()}\n" for s in settings)
            + f"\nLoad (`uptime`) before: `{before}`; after: `{after}`. Server restarts (a "
            f"crash, runs during it dropped): "
            f"{', '.join(f'{k} {v}' for k, v in restarts.items())}.\n\n{table}\n"
        )
    return 0


def _median(values: list[Measure], attr: str) -> float:
    return float(statistics.median(getattr(v, attr) for v in values))


def _table(
    results: dict[Key, list[Measure]],
    settings: list[str],
    protocols: list[str],
    targets: dict[str, str],
    concurrency: list[int],
) -> str:
    head = (
        "| setting | protocol | model | c | infer/s tp | infer/s pa | ratio | p50 us tp "
        "| p50 us pa | ratio | p99 us tp | p99 us pa | ratio | CPU s/1k tp | CPU s/1k pa "
        "| ratio | server CPU s/1k tp | server CPU s/1k pa | runs tp/pa "
        "| paired infer/s ratios |"
    )
    lines = [head, "|" + "---|" * 20]
    for setting, protocol, model, c in itertools.product(settings, protocols, targets, concurrency):
        tp = results.get((setting, protocol, model, c, "tritonpipe"))
        pa = results.get((setting, protocol, model, c, "perf_analyzer"))
        cells = [setting, protocol, model, str(c)]
        if not tp or not pa:
            lines.append("| " + " | ".join(cells + ["no stable run"] + [""] * 15) + " |")
            continue
        for attr, fmt in (
            ("throughput", "{:.1f}"),
            ("p50_us", "{:.0f}"),
            ("p99_us", "{:.0f}"),
            ("cpu_per_1k", "{:.2f}"),
        ):
            a, b = _median(tp, attr), _median(pa, attr)
            cells += [fmt.format(a), fmt.format(b), f"{a / b:.2f}" if b else "-"]
        # Each repeat's two runs, back to back, share the machine's load of that minute.
        by_repeat = {m.repeat: m.throughput for m in pa}
        paired = [m.throughput / by_repeat[m.repeat] for m in tp if by_repeat.get(m.repeat)]
        cells += [
            f"{_median(tp, 'server_cpu_per_1k'):.2f}",
            f"{_median(pa, 'server_cpu_per_1k'):.2f}",
            f"{len(tp)}/{len(pa)}",
            (f"median {statistics.median(paired):.2f} of " + ", ".join(f"{r:.2f}" for r in paired))
            if paired
            else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
