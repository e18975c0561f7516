"""Benchmark the fraud pipeline (after `make fraud`): throughput and p50/p99 at 1/8/32 concurrent
requests, SQLite vs Redis online store, prediction logging on vs off, and the lookup step's share
of the server's compute time. One server hosts the four variants; they run one after the other.

    python -m benchmarks.fraud --out benchmarks/results/fraud_pipeline.md
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tritonpipe.perf.generator import LevelResult, ProfileOptions, Profiler
from tritonpipe.perf.machine import describe_machine, tree_cpu_s
from tritonpipe.server.redis_server import RedisServer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fraud"
KEY = [{"name": "account_id", "dtype": "INT64", "shape": [1]}]
REQUEST = [
    {"name": n, "dtype": "FP32", "shape": [1]} for n in ("amount", "merchant_lat", "merchant_lon")
] + [{"name": "timestamp", "dtype": "FP64", "shape": [1]}]
FEATURES = [{"name": "features", "dtype": "FP32", "shape": [13]}]
SERVING = {"max_batch_size": 256, "dynamic_batching": {"max_queue_delay_microseconds": 500}}


def _redis_feature_repo(source: Path, target: Path, redis: RedisServer) -> None:
    """A copy of the example's Feast repository whose online store is ``redis``, materialised."""
    import pandas as pd
    from feast import FeatureStore

    (target / "data").mkdir(parents=True)
    shutil.copyfile(source / "definitions.py", target / "definitions.py")
    offline = source / "data" / "account_features.parquet"
    shutil.copyfile(offline, target / "data" / offline.name)
    config = yaml.safe_load((source / "feature_store.yaml").read_text())
    config["online_store"] = {"type": "redis", "connection_string": f"127.0.0.1:{redis.port}"}
    (target / "feature_store.yaml").write_text(yaml.safe_dump(config))
    spec = importlib.util.spec_from_file_location("fraud_definitions", target / "definitions.py")
    assert spec is not None and spec.loader is not None
    definitions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(definitions)
    store = FeatureStore(repo_path=str(target))
    store.apply(definitions.OBJECTS)
    stamps = pd.read_parquet(offline, columns=["event_timestamp"])["event_timestamp"]
    store.materialize(
        stamps.min().to_pydatetime(), (stamps.max() + pd.Timedelta(seconds=1)).to_pydatetime()
    )


def _decide() -> dict[str, Any]:
    return {
        "function": "stages.py:decide",
        "parameters": {"threshold": "${models.scorer.tags.threshold}"},
        "inputs": [{"name": "logit", "dtype": "FP32", "shape": [1]}, *KEY, *FEATURES]
        + [{"name": "entity_found", "dtype": "BOOL", "shape": [1]}],
        "outputs": [
            {"name": "probability", "dtype": "FP32", "shape": [1]},
            {"name": "is_fraud", "dtype": "BOOL", "shape": [1]},
        ],
        **SERVING,
    }


def spec(repos: dict[str, Path], registry_uri: str, logs: Path) -> dict[str, Any]:
    """Ensembles <store>_log and <store>_nolog for each online store in ``repos``."""
    features: dict[str, Any] = {}
    stages: dict[str, Any] = {"decide_nolog": _decide()}
    ensembles: dict[str, Any] = {}
    for store, repo in repos.items():
        features[f"lookup_{store}"] = {
            "repo": str(repo),
            "feature_service": "fraud_v1",
            "entity_keys": KEY,
            "request_data": REQUEST,
            "transform": "fraud_features.py:serving_inputs",
            "outputs": FEATURES,
            "instance_groups": [{"count": 2, "kind": "cpu"}],
            **SERVING,
        }
        stages[f"decide_{store}"] = _decide()
        outputs = ["probability", "is_fraud", "entity_found"]
        ensembles[f"{store}_nolog"] = {
            "steps": [f"lookup_{store}", "scorer", "decide_nolog"],
            "outputs": outputs,
        }
        ensembles[f"{store}_log"] = {
            "steps": [f"lookup_{store}", "scorer", f"decide_{store}"],
            "outputs": outputs,
            "log": {
                "sink": {"type": "parquet", "path": str(logs / store)},
                "entity_keys": ["account_id"],
                "features": "features",
            },
        }
    scorer = {"registry": "models:/fraud@champion", "format": "onnx", **SERVING}
    return {
        "registry_uri": registry_uri,
        "features": features,
        "models": {"scorer": scorer},
        "stages": stages,
        "ensembles": ensembles,
    }


def input_data(path: Path, rows: int) -> None:
    """Held-out transactions in perf_analyzer's JSON input format."""
    import pandas as pd

    txns = pd.read_parquet(EXAMPLE / "artifacts" / "data" / "transactions.parquet")
    day = txns[txns["timestamp"] >= txns["timestamp"].max().floor("D")].head(rows)
    data = [
        {
            "account_id": [int(t.account_id)],
            "amount": [float(t.amount)],
            "merchant_lat": [float(t.merchant_lat)],
            "merchant_lon": [float(t.merchant_lon)],
            "timestamp": [t.timestamp.value / 1e9],
        }
        for t in day.itertuples()
    ]
    path.write_text(json.dumps({"data": data}))


def _load() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


Measured = tuple[LevelResult, float]  # a level and the lookup's share of server CPU time


def _median_levels(runs: list[list[Measured]]) -> list[Measured]:
    """Per load level, the run with the median throughput."""
    levels = []
    for per_level in zip(*runs, strict=True):
        ordered = sorted(per_level, key=lambda r: r[0].row.throughput)
        levels.append(ordered[len(ordered) // 2])
    return levels


def _measure(profile: ProfileOptions, metrics_url: str, pid: int) -> Measured:
    """One load level, and the lookup step's time over the server's CPU time in the same span
    (warm-up and trials included on both sides)."""
    from tritonpipe.perf.step_metrics import scrape

    steps, cpu = scrape(metrics_url, profile.model), tree_cpu_s(pid)
    (level,) = asyncio.run(Profiler(profile).run())
    after, cpu_after = scrape(metrics_url, profile.model), tree_cpu_s(pid)
    lookup_us = sum(
        after[s][2] - steps.get(s, (0.0, 0.0, 0.0))[2] for s in after if s.startswith("lookup_")
    )
    return level, lookup_us / max((cpu_after - cpu) * 1e6, 1.0)


def _median_pair(ours: Any, theirs: Any, calls: int = 200) -> tuple[float, float]:
    """Median microseconds per call of two callables, called alternately so that load from
    other processes hits both alike."""
    import time

    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for call, sink in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            call()
            sink.append(time.perf_counter() - start)
    a, b = (sorted(t)[calls // 2] * 1e6 for t in times)
    return a, b


def lookup_timings(repository: Path, repos: dict[str, Path]) -> dict[str, dict[int, float]]:
    """In-process microseconds per call, median of 200 alternating calls: tritonpipe's lookup step
    (one online_read per batch) against Feast's get_online_features(...).to_dict()."""
    import numpy as np
    from feast import FeatureStore

    from tritonpipe.features.runtime import OnlineLookup

    rng = np.random.default_rng(0)
    out: dict[str, dict[int, float]] = {}
    for store, repo in repos.items():
        # Every variant is one fused model; its version folder holds the lookup's Feast files.
        support = repository / f"{store}_nolog" / "1" / f"feature_lookup_lookup_{store}"
        lookup = OnlineLookup(support)
        sdk = FeatureStore(repo_path=str(repo))
        service = sdk.get_feature_service("fraud_v1")
        for batch in (1, 8, 32):
            ids = rng.integers(1, 5000, batch).reshape(-1, 1)
            rows = [{"account_id": int(i)} for i in ids.reshape(-1)]
            ours, theirs = _median_pair(
                lambda: lookup.read({"account_id": ids}),  # noqa: B023
                lambda: sdk.get_online_features(features=service, entity_rows=rows).to_dict(),  # noqa: B023
            )
            out.setdefault(f"tritonpipe lookup, {store}", {})[batch] = ours
            out.setdefault(f"Feast get_online_features, {store}", {})[batch] = theirs
    return out


def report(
    results: dict[str, list[Measured]],
    before: str,
    after: str,
    repeat: int,
    lookups: dict[str, dict[int, float]],
) -> str:
    lines = [
        "# Fraud pipeline: Feast lookup + on-demand features -> scorer -> decision -> log",
        "",
        f"Machine: {describe_machine()}. Load average (1/5/15 min) "
        f"before {before}, after {after}. One row per request (one transaction); HTTP (raw "
        "transport); tritonpipe's load generator (perf_analyzer's method, stable windows). The "
        f"four variants run interleaved on one server, {repeat} times; each cell is the median "
        "run. Compare ratios taken in this run, not absolutes.",
        "",
        "Two lookup shares: of the fused model's step time (lookup, scorer, decide: the lookup "
        "dominates, the other two are small), and of the server's CPU time (tritonserver and "
        "its stubs: HTTP, batching, the process hop and the steps). The second is an upper "
        "bound on the lookup's CPU share, since step time also counts waits on the store.",
        "",
        "| variant | concurrency | predictions/s | p50 ms | p99 ms | lookup share of step time "
        "| lookup time / server CPU time |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, levels in results.items():
        for level, cpu_share in levels:
            # Each variant is one fused model: its per-step counters say where the time went.
            share = sum(r.share for r in level.steps if r.step.startswith("lookup_"))
            lines.append(
                f"| {variant} | {level.row.load:g} | {level.row.throughput:,.0f} | "
                f"{level.row.p50_us / 1000:.1f} | {level.row.p99_us / 1000:.1f} | {share:.0%} "
                f"| {cpu_share:.0%} |"
            )
    lines += [
        "",
        "Logging cost (throughput with logging / without, same store and concurrency):",
        "",
    ]
    for store in ("sqlite", "redis"):
        on, off = results.get(f"{store}_log"), results.get(f"{store}_nolog")
        if on and off:
            ratios = [
                f"c={a.row.load:g}: {a.row.throughput / max(b.row.throughput, 1e-9):.2f}"
                for (a, _), (b, _) in zip(on, off, strict=True)
            ]
            lines.append(f"- {store}: {', '.join(ratios)}")
    lines += [
        "",
        "The lookup itself, in process (median microseconds per call, 200 calls alternating with "
        "the SDK's; batch = rows):",
        "",
        "| path | batch 1 | batch 8 | batch 32 |",
        "|---|---|---|---|",
    ]
    for name, by_batch in lookups.items():
        cells = " | ".join(f"{by_batch[b]:,.0f}" for b in (1, 8, 32))
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fraud_pipeline.md"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--interval-ms", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from tritonpipe.ensembles import build_repository
    from tritonpipe.server import ServerOptions, TritonServer

    with tempfile.TemporaryDirectory(prefix="fraud-bench-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root).start()
        try:
            _redis_feature_repo(EXAMPLE / "feature_repo", root / "feature_repo_redis", redis)
            for name in ("fraud_features.py", "stages.py"):
                shutil.copyfile(EXAMPLE / name, root / name)
            repos = {"sqlite": EXAMPLE / "feature_repo", "redis": root / "feature_repo_redis"}
            registry = f"sqlite:///{EXAMPLE / 'artifacts' / 'mlflow.db'}"
            (root / "pipeline.yaml").write_text(
                yaml.safe_dump(spec(repos, registry, root / "logs"))
            )
            build_repository(root / "pipeline.yaml", root / "repository")
            input_data(root / "input.json", 2000)
            before = _load()
            results: dict[str, list[Measured]] = {}
            options = ServerOptions(repository=root / "repository")
            with TritonServer(options, log_path=root / "tritonserver.log") as server:
                runs: dict[str, list[list[Measured]]] = {}
                pid = server.pid
                assert pid is not None
                for _ in range(args.repeat):  # variants interleaved, so drift hits all alike
                    for variant in ("sqlite_nolog", "sqlite_log", "redis_nolog", "redis_log"):
                        measured = []
                        for load in args.concurrency:
                            profile = ProfileOptions(
                                model=variant,
                                url=server.http_url,
                                loads=(float(load),),
                                input_data=str(root / "input.json"),
                                measurement_interval_ms=args.interval_ms,
                                max_trials=4,
                                # Prebuilt requests on asyncio streams: about a third of
                                # tritonclient's client CPU, which here is taken from the server.
                                transport="raw",
                                metrics_url=server.metrics_url,
                            )
                            measured.append(_measure(profile, server.metrics_url, pid))
                        runs.setdefault(variant, []).append(measured)
                results = {v: _median_levels(r) for v, r in runs.items()}
            lookups = lookup_timings(root / "repository", repos)
            text = report(results, before, _load(), args.repeat, lookups)
        finally:
            redis.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
