"""The fraud example as a batch job read from the feature store: the held-out day's transactions
are the entity rows (account_id + event_timestamp), Feast joins the `fraud_v1` features
point-in-time from the offline store, the lookup's own transform (fraud_features.py) adds the
on-demand features, and examples/fraud/batch.yaml (scorer + decision) scores them. Each runner
(in-process, Triton-backed, Spark local[*]) writes Parquet under --out/<runner>/ and its rows/s
is printed. The job config it writes (--out/job.yaml) runs again with `tritonpipe batch`.

    python examples/fraud/batch_demo.py --out build/fraud_batch     # after `make fraud`
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
DATA = HERE / "artifacts" / "data"
SPEC = HERE / "batch.yaml"
MODEL = "fraud_offline"


def heldout_entities(data: Path = DATA) -> pd.DataFrame:
    """The last day's transactions: keys, request data and event_timestamp (Feast's as-of)."""
    txns = pd.read_parquet(data / "transactions.parquet")
    day = txns[txns["timestamp"] >= txns["timestamp"].max().floor("D")]
    day = day.sort_values("timestamp").reset_index(drop=True)
    return pd.DataFrame(
        {
            "txn_id": day["txn_id"].astype(np.int64),
            "account_id": day["account_id"].astype(np.int64),
            "amount": day["amount"].astype(np.float32),
            "merchant_lat": day["merchant_lat"].astype(np.float32),
            "merchant_lon": day["merchant_lon"].astype(np.float32),
            "timestamp": day["timestamp"].astype("int64").to_numpy() / 1e9,
            "event_timestamp": day["timestamp"],
            "day": day["timestamp"].dt.strftime("%Y-%m-%d"),
        }
    )


def job_config(entities: Path, out: Path, pipeline: Path, batch_size: int) -> dict[str, Any]:
    """The batch job, with absolute paths (``tritonpipe batch`` runs it as it is)."""
    return {
        "pipeline": str(pipeline),
        "model": MODEL,
        "source": {
            "type": "feast",
            "path": str(entities),
            "repo": str(HERE / "feature_repo"),
            "feature_service": "fraud_v1",
            "rows_per_unit": 5000,
        },
        "transform": f"{HERE / 'fraud_features.py'}:serving_inputs",
        "missing_features": "defaults",  # like the online lookup: zeros, entity_found false
        "output": {"type": "parquet", "path": str(out), "partition_by": ["day"]},
        "key": ["txn_id", "account_id", "day", "entity_found"],
        "batch_size": batch_size,
    }


def main() -> None:
    from tritonpipe.batch import TritonEngine, parse_config, run_job
    from tritonpipe.batch.spark import run_spark, session
    from tritonpipe.ensembles import build_repository
    from tritonpipe.server import ServerOptions, TritonServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/fraud_batch"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--runners", nargs="+", default=["inprocess", "triton", "spark"])
    args = parser.parse_args()

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    entities = heldout_entities()
    entities.to_parquet(out / "day.parquet", index=False)
    repository = out / "repository"
    build_repository(SPEC, repository)  # served by the Triton runner, loaded by the others
    raw = job_config(out / "day.parquet", out / "inprocess", repository, args.batch_size)
    (out / "job.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    print(
        f"{len(entities):,} transactions of {entities['day'].iloc[0]} as entity rows; features "
        f"joined point-in-time from {HERE / 'feature_repo'} (feature service fraud_v1)"
    )
    rates: dict[str, float] = {}

    def config(runner: str) -> Any:
        return parse_config({**raw, "output": {**raw["output"], "path": str(out / runner)}})

    if "inprocess" in args.runners:
        summary = run_job(config("inprocess"), progress=False)
        print(f"  in-process: {summary.text()}")
        rates["in-process"] = summary.rows_per_s
    if "triton" in args.runners:
        options = ServerOptions(repository=repository)
        with TritonServer(options, log_path=out / "tritonserver.log") as server:
            engine = TritonEngine(
                server.grpc_url, MODEL, batch_size=args.batch_size, in_flight=args.in_flight
            )
            summary = run_job(config("triton"), engine, progress=False, engine_name="triton")
        print(f"  triton:     {summary.text()}")
        rates[f"Triton-backed (gRPC, {args.in_flight} in flight)"] = summary.rows_per_s
    if "spark" in args.runners:
        start = time.perf_counter()
        spark = session("local[*]")  # JVM start-up is not scoring: timed apart
        started = time.perf_counter() - start
        summary = run_spark(config("spark"), spark=spark)
        spark.stop()
        print(f"  spark:      {summary.text()} (+{started:.1f} s JVM start)")
        rates["Spark local[*]"] = summary.rows_per_s
    scored = pd.read_parquet(out / args.runners[0])
    flagged = int(scored["is_fraud"].sum())
    print(
        f"{len(scored):,} predictions in {out / args.runners[0]} ({flagged:,} flagged as fraud, "
        f"{int((~scored['entity_found']).sum()):,} accounts without features as of their time)"
    )
    for name, rate in rates.items():
        print(f"{name:40s} {rate:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
