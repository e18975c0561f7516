"""Try a second fraud model safely: shadow it, give it a canary share, compare the two.

1. shadow: the pipeline with `shadow: {registry: models:/fraud@challenger, sample: 0.2}` scores
   the held-out day; answers are the champion's, both versions' outputs are logged. The answer's
   latency with and without the shadow at 1, 8 and 32 connections is printed side by side.
2. compare: agreement of decisions, score deltas and ROC AUC per version with a bootstrap
   interval, from the logs and the day's labels (report with plots in build/fraud_compare).
3. in-process: the same spec run by tritonpipe.pipeline.Pipeline (what batch and stream jobs
   use) shadows the same way; compared from its logs.
4. canary: two replicas behind HAProxy (roundrobin), one rolled onto @challenger at 10% of the
   traffic; the share each version answered is counted from the logs; then rolled back.

    python examples/fraud/challenger_demo.py    (after make fraud and train.py --alias challenger)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from demo import heldout, request_arrays, score  # noqa: E402

from tritonpipe.compare import compare_logs, write_report  # noqa: E402
from tritonpipe.deploy.canary import Canary  # noqa: E402
from tritonpipe.deploy.replicas import ReplicaSet, ReplicaSetOptions  # noqa: E402
from tritonpipe.deploy.rollout import Replica  # noqa: E402
from tritonpipe.ensembles import build_repository  # noqa: E402
from tritonpipe.predlog import read_logs  # noqa: E402
from tritonpipe.server import ServerOptions, TritonServer  # noqa: E402
from tritonpipe.shadow.variants import variant_spec  # noqa: E402

SPEC = HERE / "challenger.yaml"
LOG = Path("prediction_logs") / "fraud_challenger"  # the spec's log: path (beside a repository)


def take(arrays: dict[str, np.ndarray[Any, Any]], rows: slice) -> dict[str, np.ndarray[Any, Any]]:
    return {n: a[rows] for n, a in arrays.items()}


def latency(url: str, arrays: dict[str, Any], concurrency: int, tag: str) -> tuple[float, float]:
    _, ms, _ = asyncio.run(score(url.split("://", 1)[1], "grpc", arrays, concurrency, tag))
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def shadow_step(build: Path, day: pd.DataFrame, arrays: dict[str, Any], rows: int) -> Path:
    """Score the day with and without the shadow; print latency; the shadow build's logs."""
    repos = {}
    for which, spec in (("champion", None), ("shadow", SPEC)):
        repos[which] = build / f"fraud_{which}_repository"
        if spec is None:
            with variant_spec(SPEC, "champion") as path:
                build_repository(path, repos[which])
        else:
            build_repository(spec, repos[which])
    logs = build / LOG
    shutil.rmtree(logs, ignore_errors=True)
    shutil.rmtree(build / "prediction_logs" / "fraud_champion_only", ignore_errors=True)
    figures: dict[str, dict[int, tuple[float, float]]] = {}
    for which, repo in repos.items():
        log = build / f"fraud-{which}-tritonserver.log"
        with TritonServer(ServerOptions(repository=repo), log_path=log) as server:
            figures[which] = {}
            for c in (1, 8, 32):
                n = min(rows, 300 * max(c // 4, 1))
                figures[which][c] = latency(server.grpc_url, take(arrays, slice(0, n)), c,
                                            f"lat{which}{c}")  # fmt: skip
            if which == "shadow":  # the whole day, ids the labels join on
                asyncio.run(score(server.grpc_url.split("://", 1)[1], "grpc", arrays, 16, "day"))
    print("answer latency (gRPC, one transaction a request): without shadow | with shadow 20%")
    for c in (1, 8, 32):
        (a50, a99), (b50, b99) = figures["champion"][c], figures["shadow"][c]
        print(f"  {c:>2} connections: p50 {a50:5.1f} | {b50:5.1f} ms ({b50 / a50:.2f}x)   "
              f"p99 {a99:5.1f} | {b99:5.1f} ms ({b99 / a99:.2f}x)")  # fmt: skip
    return logs


def labels_of(day: pd.DataFrame, tag: str) -> pd.DataFrame:
    ids = [f"{tag}-{i}" for i in range(len(day))]
    return pd.DataFrame({"request_id": ids, "label": day["is_fraud"].astype(int).to_numpy()})


def inprocess_step(day: pd.DataFrame, arrays: dict[str, Any], rows: int) -> None:
    """A batch or stream job's in-process pipeline shadows the same way (the spec's log; its
    relative path starts at the spec's folder)."""
    from tritonpipe.pipeline import Pipeline

    logs = HERE / LOG
    shutil.rmtree(logs, ignore_errors=True)
    ids = [f"batch-{i}" for i in range(rows)]
    with Pipeline.load(SPEC) as pipe:
        pipe(take(arrays, slice(0, rows)), request_ids=ids)
    result = compare_logs(read_logs(logs), labels=labels_of(day.iloc[:rows], "batch"),
                          resamples=300)  # fmt: skip
    print(f"in-process (as batch and stream jobs run it), {rows:,} transactions:")
    for line in result.lines():
        print(f"  {line}")


def canary_step(build: Path, day: pd.DataFrame, arrays: dict[str, Any], rows: int) -> None:
    with variant_spec(SPEC, "champion") as path:
        build_repository(path, build / "fraud_canary_champion")
    with variant_spec(SPEC, "challenger") as path:
        build_repository(path, build / "fraud_canary_challenger")
    workdir = build / "fraud_replicas"
    shutil.rmtree(workdir, ignore_errors=True)
    options = ReplicaSetOptions(
        repository=build / "fraud_canary_champion", replicas=2, workdir=workdir,
        balance="roundrobin", exit_timeout_s=10,
    )  # fmt: skip
    with ReplicaSet(options) as fleet:
        assert fleet.balancer is not None
        replicas = [
            Replica(name=fleet.replica_name(i), http_url=s.http_url,
                    repository=s.options.repository)
            for i, s in enumerate(fleet.servers)
        ]  # fmt: skip
        canary = Canary(replicas, fleet.balancer.runtime, state_dir=workdir, progress=print)
        canary.start(build / "fraud_canary_challenger", share=0.1, count=1)
        asyncio.run(score(fleet.balancer.grpc_url.split("://", 1)[1], "grpc",
                          take(arrays, slice(0, rows)), 8, "canary"))  # fmt: skip
        canary.rollback(build / "fraud_canary_champion")
    time.sleep(1.5)
    frames = [read_logs(p) for p in sorted(workdir.glob(f"replica-*/{LOG}"))]
    frame = pd.concat([f for f in frames if len(f)], ignore_index=True)
    frame = frame[frame["request_id"].astype(str).str.startswith("canary-")]
    shares = frame["model_version"].astype(str).value_counts(normalize=True)
    print(f"canary: {len(frame):,} requests answered; share per version "
          + ", ".join(f"v{v} {s:.1%}" for v, s in shares.items()))  # fmt: skip
    result = compare_logs(frame, labels=labels_of(day.iloc[:rows], "canary"), resamples=300)
    for line in result.lines():
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--rows", type=int, default=3000, help="Requests for the canary.")
    args = parser.parse_args()
    build = args.build.resolve()
    day = heldout()
    arrays = request_arrays(day)
    print(f"held-out day: {len(day):,} transactions, {int(day['is_fraud'].sum())} fraudulent")
    logs = shadow_step(build, day, arrays, args.rows)
    time.sleep(1.5)  # the last shadow batch reaches the log
    frame = read_logs(logs)
    frame = frame[frame["request_id"].astype(str).str.startswith("day-")]
    result = compare_logs(frame, labels=labels_of(day, "day"), resamples=500)
    print("compare (shadow, same requests):")
    for line in result.lines():
        print(f"  {line}")
    print(f"  report: {write_report(result, build / 'fraud_compare')}")
    inprocess_step(day, arrays, args.rows)
    canary_step(build, day, arrays, args.rows)


if __name__ == "__main__":
    main()
