"""The fraud example as a stream: start Redis (and, with --bus nats or kafka, that bus too: a
nats-server, or Tansu as the Kafka broker), put a copy of the feature repository on Feast's
Redis online store in it, replay the held-out day of transactions into a stream at a chosen rate,
run workers (fresh features pushed to that store + embedded pipeline) and print events/s, lag and
end-to-end p50/p99 until every transaction is scored; then stop the workers and Redis.

    python examples/fraud/stream_demo.py --rate 100 --workers 2    # after `make fraud`
    python examples/fraud/stream_demo.py --bus kafka               # a 4-partition topic
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

HERE = Path(__file__).parent
DATA = HERE / "artifacts" / "data"
REPO = HERE / "feature_repo"


def heldout_events(data: Path = DATA, limit: int | None = None) -> list[dict[str, Any]]:
    """The last day's transactions as stream events, in time order."""
    txns = pd.read_parquet(data / "transactions.parquet")
    day = txns[txns["timestamp"] >= txns["timestamp"].max().floor("D")].sort_values("timestamp")
    day = day.head(limit) if limit else day
    return [
        {"txn_id": int(t.txn_id), "account_id": int(t.account_id), "amount": float(t.amount),
         "merchant_lat": float(t.merchant_lat), "merchant_lon": float(t.merchant_lon),
         "timestamp": t.timestamp.timestamp()}
        for t in day.itertuples(index=False)
    ]  # fmt: skip


def feature_repo(folder: Path, online: str, redis_url: str) -> Path:
    """A copy of feature_repo in ``folder`` whose online store is SQLite (a copy of the example's)
    or Feast's Redis online store on the stream's Redis (db 2), applied and filled, so the
    workers push into it without touching the example's own store."""
    import feature_pipeline

    repo = folder / "feature_repo"
    (repo / "data").mkdir(parents=True)
    shutil.copyfile(REPO / "definitions.py", repo / "definitions.py")
    config = yaml.safe_load((REPO / "feature_store.yaml").read_text())
    (repo / "data" / "account_features.parquet").symlink_to(
        (REPO / "data" / "account_features.parquet").resolve()
    )
    if online == "redis":
        host = redis_url.split("://", 1)[1].split("/", 1)[0]
        config["online_store"] = {"type": "redis", "connection_string": f"{host},db=2"}
    else:
        shutil.copyfile(REPO / "data" / "online_store.db", repo / "data" / "online_store.db")
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    store.apply(feature_pipeline.definitions(repo).OBJECTS)
    if online == "redis":  # the latest state per account, as `make fraud` put in SQLite
        rows = pd.read_parquet(repo / "data" / "account_features.parquet")
        latest = rows.sort_values("event_timestamp").groupby("account_id").tail(1)
        store.write_to_online_store("account_stats", latest)
    return repo


def bus_for(kind: str, address: str, tag: str = "fraud") -> dict[str, Any]:
    """The job's ``bus:`` on NATS (``address``: its URL) or Kafka (bootstrap servers), with
    topics / streams named after ``tag``."""
    if kind == "nats":
        return {"type": "nats", "url": address, "stream": tag.upper(),
                "subject": f"{tag}.transactions", "durable": "scorers",
                "output": f"{tag}.scores", "dead_letter": f"{tag}.dead",
                "ack_wait_s": 10}  # fmt: skip
    return {"type": "kafka", "bootstrap_servers": address, "topic": f"{tag}.transactions",
            "group": "scorers", "output": f"{tag}.scores", "dead_letter": f"{tag}.dead",
            "partitions": 4, "session_timeout_ms": 10000}  # fmt: skip


@contextlib.contextmanager
def bus_server(kind: str, folder: Path) -> Iterator[str | None]:
    """A nats-server or a Tansu broker for ``kind`` (its address), nothing for redis."""
    if kind == "redis":
        yield None
        return
    from tritonpipe.server.kafka_server import KafkaServer
    from tritonpipe.server.nats_server import NatsServer

    (folder / kind).mkdir(exist_ok=True)
    server = NatsServer(folder / kind) if kind == "nats" else KafkaServer(folder / kind)
    server.start()
    try:
        yield server.url if isinstance(server, NatsServer) else server.bootstrap
    finally:
        server.stop()


def job_for(redis_url: str, folder: Path, fresh: bool = True, online: str = "redis",
            bus: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """examples/fraud/stream.yaml pointed at this Redis (windows in its db 1) and at a copy of
    the feature repository (``online``: redis or sqlite), written to ``folder`` with absolute
    paths; ``bus`` replaces its Redis Stream (see bus_for)."""
    spec = yaml.safe_load((HERE / "pipeline.yaml").read_text())
    spec["registry_uri"] = f"sqlite:///{(HERE / 'artifacts' / 'mlflow.db').resolve()}"
    lookup = spec["features"]["lookup"]
    lookup["repo"] = str(feature_repo(folder, online, redis_url))
    lookup["transform"] = str(HERE / lookup["transform"])
    spec["stages"]["decide"]["function"] = str(HERE / spec["stages"]["decide"]["function"])
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    raw = yaml.safe_load((HERE / "stream.yaml").read_text())
    raw["pipeline"] = str(folder / "pipeline.yaml")
    raw["bus"]["url"] = redis_url
    if bus is not None:
        raw["bus"] = bus
    if fresh:
        raw["parameters"]["windows"] = redis_url.rsplit("/", 1)[0] + "/1"
        raw["parameters"]["repo"] = lookup["repo"]
        raw["parameters"]["data"] = str(DATA.resolve())
        raw["before_score"] = str(HERE / raw["before_score"])
    else:
        del raw["before_score"], raw["parameters"]
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N")
    parser.add_argument("--url", default=None, help="score on this Triton server instead")
    parser.add_argument("--bus", choices=["redis", "nats", "kafka"], default="redis")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from tritonpipe.perf.stream_load import drive
    from tritonpipe.server.redis_server import RedisServer
    from tritonpipe.stream import load_config

    events = heldout_events(limit=args.limit)
    with tempfile.TemporaryDirectory(prefix="fraud-stream-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            with bus_server(args.bus, Path(tmp)) as address:
                bus = bus_for(args.bus, address) if address else None
                job = job_for(server.url, Path(tmp), bus=bus)
                where = f" on {address}" if address else ""
                print(f"redis on {server.url}, {args.bus} bus{where}; "
                      f"replaying {len(events):,} transactions at {args.rate:.0f}/s to "
                      f"{args.workers} workers")  # fmt: skip
                run = drive(load_config(job), job, events, workers=args.workers, rate=args.rate,
                            url=args.url, logs=Path(tmp) / "workers")  # fmt: skip
        finally:
            server.stop()
    print(
        f"done: {run.scored:,} scored, {run.dead} dead-lettered in {run.seconds:.1f} s: "
        f"{run.events_per_s:.0f} events/s, e2e p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms, "
        f"max lag {run.max_lag:,}; workers exited {list(run.exit_codes)}"
    )
    if run.scored + run.dead != run.events or any(run.exit_codes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
