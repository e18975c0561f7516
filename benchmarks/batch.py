"""Batch inference on the fraud example (after `make fraud`): rows/s per runner, side by side.

Scores the held-out day's transactions (tiled to ``--rows``) with the in-process engine, the
Triton-backed engine (gRPC, ``--in-flight`` requests) and Spark ``local[*]``, writing Parquet;
next to them the raw pipeline called on whole batches in a loop and, with ``--profile``, the
server's maximum throughput for the same model by ``perf profile``: once as perf_analyzer's
``-b`` does (one transaction repeated per batch) and once on the job's own batches of distinct
transactions (the workload the engine sends). CPU seconds of this process and of the server
(with its Python-backend stubs) are recorded per runner, to show where the cores went.

    python -m benchmarks.batch --rows 1000000 --profile \
        --out benchmarks/results/batch_fraud.md
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fraud import EXAMPLE, _load, input_data
from tritonpipe.batch import JobConfig, TritonEngine, parse_config, run_job
from tritonpipe.perf.machine import describe_machine, tree_cpu_s

REPOSITORY = Path("build/fraud_batch_repository")


def build(out: Path) -> None:
    """Build the example's spec (fused: lookup, scorer and decision in one model)."""
    from tritonpipe.ensembles import build_repository

    build_repository(EXAMPLE / "pipeline.yaml", out)


def day_rows(rows: int | None) -> Any:
    """The held-out day as the pipeline's input columns, tiled to ``rows`` with new txn ids."""
    import pandas as pd

    txns = pd.read_parquet(EXAMPLE / "artifacts" / "data" / "transactions.parquet")
    day = txns[txns["timestamp"] >= txns["timestamp"].max().floor("D")].reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "account_id": day["account_id"].astype(np.int64),
            "amount": day["amount"].astype(np.float32),
            "merchant_lat": day["merchant_lat"].astype(np.float32),
            "merchant_lon": day["merchant_lon"].astype(np.float32),
            "timestamp": day["timestamp"].astype("int64").to_numpy() / 1e9,
        }
    )
    if rows is not None:
        frame = frame.iloc[np.arange(rows) % len(frame)].reset_index(drop=True)
    frame.insert(0, "txn_id", np.arange(len(frame), dtype=np.int64))
    return frame


def config(source: Path, out: Path, batch_size: int) -> JobConfig:
    return parse_config(
        {
            "pipeline": str(REPOSITORY),
            "model": "fraud",
            "source": {"type": "parquet", "path": str(source), "rows_per_unit": 50_000},
            "output": {"type": "parquet", "path": str(out)},
            "key": ["txn_id", "account_id"],
            "batch_size": batch_size,
        }
    )


class RawPipeline:
    """The pipeline called on whole batches in a loop (the in-process ceiling); ``run`` scores
    rows [start, stop) and returns the seconds it took."""

    def __init__(self, frame: Any, batch_size: int) -> None:
        from tritonpipe.pipeline import Pipeline

        self.pipe = Pipeline.load(REPOSITORY, "fraud", threads=1)  # as the engine's default
        names = [s.name for s in self.pipe.inputs]
        self.arrays = {n: frame[n].to_numpy().reshape(-1, 1) for n in names}
        self.batch_size = batch_size
        self.run(0, 20 * batch_size)  # warm: sessions, SQLite pages

    def run(self, start: int, stop: int) -> float:
        began = time.perf_counter()
        for i in range(start, stop, self.batch_size):
            end = min(i + self.batch_size, stop)
            self.pipe({n: a[i:end] for n, a in self.arrays.items()})
        return time.perf_counter() - began


def real_batches(frame: Any, batch_size: int, count: int) -> tuple[dict[str, Any], ...]:
    """``count`` requests of ``batch_size`` distinct transactions, typed as the model wants."""
    columns = {
        "account_id": np.int64,
        "amount": np.float32,
        "merchant_lat": np.float32,
        "merchant_lon": np.float32,
        "timestamp": np.float64,
    }
    return tuple(
        {n: frame[n].to_numpy(t)[i : i + batch_size].reshape(-1, 1) for n, t in columns.items()}
        for i in range(0, count * batch_size, batch_size)
    )


def profile_max(
    url: str, folder: Path, batch_size: int, loads: tuple[float, ...], batches: tuple[Any, ...]
) -> float:
    from tritonpipe.perf.generator import ProfileOptions, Profiler

    input_data(folder / "input.json", 200)
    options = ProfileOptions(
        model="fraud",
        url=url,
        batch_size=batch_size,
        loads=loads,
        input_data=str(folder / "input.json"),
        measurement_interval_ms=3000,
        max_trials=4,
        batches=batches,
    )
    levels = asyncio.run(Profiler(options).run())
    print(
        "  perf profile levels: "
        + ", ".join(f"{lv.row.load:g} in flight {lv.row.throughput:,.0f} rows/s" for lv in levels)
    )
    return max(level.row.throughput for level in levels)


class Cpu:
    """CPU seconds of this process and of a server's process tree over a measured stretch, and
    the rows and batches the served model ran in it (Triton's statistics)."""

    def __init__(self, server_pid: int | None = None, url: str | None = None) -> None:
        self.pid = server_pid
        self.url = url
        self.rows = self.batches = 0

    def _counts(self) -> tuple[int, int]:
        if self.url is None:
            return 0, 0
        from tritonpipe.client import Client

        with Client(self.url) as client:
            stats = client.statistics("fraud")["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    @property
    def rows_per_server_s(self) -> float:
        return self.rows / self.server if self.server > 0 else 0.0

    @property
    def batch(self) -> float:
        return self.rows / self.batches if self.batches else 0.0

    def _server(self) -> float:
        return 0.0 if self.pid is None else tree_cpu_s(self.pid)

    def __enter__(self) -> Cpu:
        self.counts0 = self._counts()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.client0, self.server0 = usage.ru_utime + usage.ru_stime, self._server()
        return self

    def __exit__(self, *_: object) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.client = usage.ru_utime + usage.ru_stime - self.client0
        self.server = self._server() - self.server0
        rows, batches = self._counts()
        self.rows, self.batches = rows - self.counts0[0], batches - self.counts0[1]


def served(
    args: Any,
    frame: Any,
    tmp: Path,
    out: Path,
    results: dict[str, float],
    cpu: dict[str, Cpu],
    save: Any,
) -> None:
    """The Triton engine and perf profile against one server: profile on the job's batches
    before and after the engine's run, then perf profile's -b convention."""
    from tritonpipe.server import ServerOptions, TritonServer

    with TritonServer(ServerOptions(repository=REPOSITORY), log_path=tmp / "server.log") as server:
        batches = real_batches(frame, args.batch_size, 400)
        real: list[float] = []  # measured before and after the engine's run: the mean
        if args.profile:
            with Cpu(server.pid, server.grpc_url) as used:
                real.append(profile_max(server.grpc_url, tmp, args.batch_size, LOADS, batches))
            cpu[PROFILE_REAL] = used
        if "triton" in args.runners:
            engine = TritonEngine(
                server.grpc_url, "fraud", batch_size=args.batch_size, in_flight=args.in_flight
            )
            job = config(tmp / "day.parquet", out / "triton", args.batch_size)
            with Cpu(server.pid, server.grpc_url) as used:
                summary = run_job(job, engine, engine_name="triton")
            results[TRITON.format(args.in_flight)] = summary.rows_per_s
            cpu[TRITON.format(args.in_flight)] = used
            save()
        if args.profile:
            real.append(profile_max(server.grpc_url, tmp, args.batch_size, LOADS, batches))
            results[PROFILE_REAL] = sum(real) / len(real)
            print(f"{PROFILE_REAL}: {', '.join(f'{r:,.0f}' for r in real)} (before, after)")
            with Cpu(server.pid, server.grpc_url) as used:
                results[PROFILE] = profile_max(server.grpc_url, tmp, args.batch_size, LOADS, ())
            cpu[PROFILE] = used
            save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="Tile the day to this many rows.")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--runners", nargs="+", default=["inprocess", "triton", "spark"])
    parser.add_argument("--profile", action="store_true", help="Also measure the server's max.")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the Parquet outputs here.")
    parser.add_argument("--out", type=Path, default=None, help="Write a Markdown report here.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    out = args.keep or tmp / "out"
    shutil.rmtree(REPOSITORY, ignore_errors=True)
    build(REPOSITORY)
    frame = day_rows(args.rows)
    frame.to_parquet(tmp / "day.parquet", index=False)
    rows = len(frame)
    print(f"{rows:,} transactions of the held-out day -> {out}/<runner>/")
    before = _load()
    results: dict[str, float] = {}
    cpu: dict[str, Cpu] = {}
    # The raw loop scores the first half before the in-process job and the second half after
    # it, so a change in the other agents' load during the job weighs on both sides alike.
    raw, half = RawPipeline(frame, args.batch_size), rows // 2
    results[RAW] = 0.0  # first in the table; measured around the in-process job
    raw_seconds = raw.run(0, half)
    if "inprocess" in args.runners:
        summary = run_job(config(tmp / "day.parquet", out / "inprocess", args.batch_size))
        results[LOCAL] = summary.rows_per_s
    raw_seconds += raw.run(half, rows)
    results[RAW] = rows / raw_seconds

    def save() -> None:  # after each runner: a run cut short still leaves its numbers
        for name, value in results.items():
            print(f"  so far: {name:45s} {value:>12,.0f} rows/s")
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report(results, cpu, rows, args, before, _load()))

    save()
    if "triton" in args.runners or args.profile:
        served(args, frame, tmp, out, results, cpu, save)
    if "spark" in args.runners:
        from tritonpipe.batch.spark import run_spark, session

        spark = session("local[*]")  # started before timing: start-up is not scoring
        summary = run_spark(
            config(tmp / "day.parquet", out / "spark", args.batch_size), spark=spark
        )
        results[SPARK] = summary.rows_per_s
        spark.stop()
    for name, value in results.items():
        print(f"{name:45s} {value:>12,.0f} rows/s")
    for name, used in cpu.items():
        print(f"{name:45s} CPU s: this process {used.client:.1f}, server {used.server:.1f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(results, cpu, rows, args, before, _load()))
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)


LOADS = (2.0, 4.0, 8.0)  # requests in flight for perf profile
RAW = "raw pipeline (batches in a loop)"
LOCAL = "in-process engine"
TRITON = "Triton engine (gRPC, {} in flight)"
PROFILE_REAL = "server max, perf profile on the job's batches (mean of before/after)"
PROFILE = "server max, perf profile -b (one row repeated)"
SPARK = "Spark local[*] (predict_batch_udf)"


def report(
    results: dict[str, float], cpu: dict[str, Cpu], rows: int, args: Any, before: str, after: str
) -> str:
    lines = [
        "# Batch inference on the fraud pipeline: rows/s per runner (one run)",
        "",
        f"Machine: {describe_machine()}; no GPU; other agents' jobs shared these cores.",
        f"Load average (1/5/15 min) before: {before}; after: {after}.",
        f"{rows:,} rows (the held-out day tiled), batch size {args.batch_size}, "
        f"{args.in_flight} requests in flight for the Triton engine; outputs written as Parquet.",
        "The repository is the fused build of examples/fraud/pipeline.yaml (`fuse: auto`: "
        "lookup, scorer and decision in one Python model, 2 instances).",
        "",
        "| runner | rows/s |",
        "|---|---:|",
        *[f"| {name} | {value:,.0f} |" for name, value in results.items()],
        "",
    ]
    if cpu:
        lines += [
            "| measured stretch | CPU s, client process | CPU s, server + stubs | rows run "
            "by the model | rows per server CPU s | rows per model execution |",
            "|---|---:|---:|---:|---:|---:|",
            *[
                f"| {n} | {c.client:.1f} | {c.server:.1f} | {c.rows:,} | "
                f"{c.rows_per_server_s:,.0f} | {c.batch:.0f} |"
                for n, c in cpu.items()
            ],
            "",
        ]
    raw, local = results.get(RAW), results.get(LOCAL)
    triton = results.get(TRITON.format(args.in_flight))
    if raw and local:
        lines.append(f"In-process engine / raw pipeline: {local / raw:.2f} (target >= 0.9).")
    for key in (PROFILE_REAL, PROFILE):
        if triton and results.get(key):
            lines.append(f"Triton engine / {key}: {triton / results[key]:.2f} (target >= 0.9).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
