"""Batch inference on the fraud example (after `make fraud`): rows/s per runner, side by side.

Scores the held-out day's transactions (tiled to ``--rows``) with the in-process engine, the
Triton-backed engine (gRPC, ``--in-flight`` requests) and Spark ``local[*]``, writing Parquet;
next to them the raw pipeline called on whole batches in a loop and, with ``--profile``, the
server's maximum throughput for the same ensemble by ``perf profile`` (batched requests).

    python -m tritonpipe.perf.batch_benchmark --rows 1000000 --profile \
        --out tritonpipe/perf/results/batch_fraud.md
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.batch import JobConfig, TritonEngine, parse_config, run_job
from tritonpipe.perf.fraud_benchmark import EXAMPLE, _load, input_data
from tritonpipe.perf.machine import describe_machine

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


def raw_pipeline(frame: Any, batch_size: int) -> float:
    """Rows/s of the pipeline called on whole batches in a loop (the in-process ceiling)."""
    from tritonpipe.pipeline import Pipeline

    pipe = Pipeline.load(REPOSITORY, "fraud")
    names = [s.name for s in pipe.inputs]
    arrays = {n: frame[n].to_numpy().reshape(-1, 1) for n in names}
    start = time.perf_counter()
    for i in range(0, len(frame), batch_size):
        pipe({n: a[i : i + batch_size] for n, a in arrays.items()})
    return len(frame) / (time.perf_counter() - start)


def profile_max(url: str, folder: Path, batch_size: int, loads: tuple[float, ...]) -> float:
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
    )
    levels = asyncio.run(Profiler(options).run())
    return max(level.row.throughput for level in levels)


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
    from tritonpipe.server import ServerOptions, TritonServer

    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    out = args.keep or tmp / "out"
    shutil.rmtree(REPOSITORY, ignore_errors=True)
    build(REPOSITORY)
    frame = day_rows(args.rows)
    frame.to_parquet(tmp / "day.parquet", index=False)
    rows = len(frame)
    print(f"{rows:,} transactions of the held-out day -> {out}/<runner>/")
    before, results = _load(), {}
    results["raw pipeline (batches in a loop)"] = raw_pipeline(frame, args.batch_size)
    if "inprocess" in args.runners:
        summary = run_job(config(tmp / "day.parquet", out / "inprocess", args.batch_size))
        results["in-process engine"] = summary.rows_per_s
    if "triton" in args.runners or args.profile:
        with TritonServer(
            ServerOptions(repository=REPOSITORY), log_path=tmp / "server.log"
        ) as server:
            if "triton" in args.runners:
                engine = TritonEngine(
                    server.grpc_url, "fraud", batch_size=args.batch_size, in_flight=args.in_flight
                )
                job = config(tmp / "day.parquet", out / "triton", args.batch_size)
                summary = run_job(job, engine, engine_name="triton")
                results[f"Triton engine (gRPC, {args.in_flight} in flight)"] = summary.rows_per_s
            if args.profile:
                results["server max (perf profile)"] = profile_max(
                    server.grpc_url, tmp, args.batch_size, (2.0, 4.0, 8.0)
                )
    if "spark" in args.runners:
        from tritonpipe.batch.spark import run_spark, session

        spark = session("local[*]")  # started before timing: start-up is not scoring
        summary = run_spark(
            config(tmp / "day.parquet", out / "spark", args.batch_size), spark=spark
        )
        results["Spark local[*] (predict_batch_udf)"] = summary.rows_per_s
        spark.stop()
    for name, value in results.items():
        print(f"{name:45s} {value:>12,.0f} rows/s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(results, rows, args, before, _load()))
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict[str, float], rows: int, args: Any, before: str, after: str) -> str:
    lines = [
        "# Batch inference on the fraud pipeline: rows/s per runner (one run)",
        "",
        f"Machine: {describe_machine()}; no GPU; other agents' jobs shared these cores.",
        f"Load average (1/5/15 min) before: {before}; after: {after}.",
        f"{rows:,} rows (the held-out day tiled), batch size {args.batch_size}, "
        f"{args.in_flight} requests in flight for the Triton engine; outputs written as Parquet.",
        "The repository is the fused build (lookup, scorer and decision in one model).",
        "",
        "| runner | rows/s |",
        "|---|---:|",
        *[f"| {name} | {value:,.0f} |" for name, value in results.items()],
        "",
    ]
    raw = results.get("raw pipeline (batches in a loop)")
    local = results.get("in-process engine")
    server = results.get("server max (perf profile)")
    triton = next((v for k, v in results.items() if k.startswith("Triton engine")), None)
    if raw and local:
        lines.append(f"In-process engine / raw pipeline: {local / raw:.2f} (target >= 0.9).")
    if server and triton:
        lines.append(f"Triton engine / server max: {triton / server:.2f} (target >= 0.9).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
