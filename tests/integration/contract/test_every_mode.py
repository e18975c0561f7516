"""The issue-18 property: the same records through every mode get the same verdicts, the same
reason for each refused record and equal outputs for each accepted one.

Modes, each against the in-process reference (the records contract, then
``Pipeline.run_requests``):

- online over HTTP and gRPC: the contract as the served model publishes it, then one request
  per record to the session's tritonserver; a refusal is the server's 400 text;
- stream: Redis and NATS, each with the embedded pipeline and scoring on the server
  (``--url``), and Kafka (Tansu) embedded; a refusal is the dead letter's reason, an output the
  JSON output record (a binary output in it is base64 text);
- batch, in-process engine: Parquet, SQLite and PostgreSQL outputs; a refusal is the rejects
  file's reason (see ``batch_mode``: absent fields are nulls in a table, SQLite stores NaN as
  NULL); the Spark engine runs one generated batch per signature in ``test_spark_mode``.

Outputs compare bit-equal: every mode scores one record per request (batch: one record per
unit), so batch composition never differs. A reason compares equal up to the mode's prefix
(``decode: ``, ``model 'sig0': ``): the contract's text is contained in the mode's.

Examples per signature: the ``ci`` profile (default, 3) keeps ``make test`` short; run many with
``HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/integration/contract`` (200).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from tests.integration.batch.postgres import PostgresServer
from tests.integration.contract import batch_mode
from tests.integration.contract.conftest import SIGNATURES, Signature
from tests.integration.contract.modes import (
    Recording,
    check_verdicts,
    contract_of,
    in_process,
    online,
    records,
    stream,
)
from tritonpipe.batch import BatchJob
from tritonpipe.batch.engines import InProcessEngine
from tritonpipe.client import Client
from tritonpipe.pipeline import Pipeline
from tritonpipe.server import TritonServer
from tritonpipe.server.kafka_server import KafkaServer
from tritonpipe.server.nats_server import NatsServer
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config

PROFILES = {
    "ci": settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck)),
    "thorough": settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck)),
}
PROFILE = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "ci")]
STREAMS = ("redis", "redis_url", "nats", "nats_url", "kafka")


def _bus(kind: str, tag: str, servers: dict[str, Any]) -> dict[str, Any]:
    if kind == "redis":
        return {"type": "redis", "url": servers["redis"].url, "stream": f"{tag}:in",
                "output": f"{tag}:out", "dead_letter": f"{tag}:dead"}  # fmt: skip
    if kind == "nats":
        return {"type": "nats", "url": servers["nats"].url, "stream": tag.upper(),
                "subject": f"{tag}.in", "output": f"{tag}.out", "dead_letter": f"{tag}.dead"}  # fmt: skip
    return {"type": "kafka", "bootstrap_servers": servers["kafka"].bootstrap,
            "topic": f"{tag}.in", "output": f"{tag}.out", "dead_letter": f"{tag}.dead",
            "partitions": 1, "session_timeout_ms": 6000}  # fmt: skip


@pytest.fixture(scope="module")
def modes(
    contract_spec: Path,
    contract_server: TritonServer,
    contract_redis: RedisServer,
    contract_nats: NatsServer,
    contract_kafka: KafkaServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """Per signature: the in-process pipeline, HTTP and gRPC clients, the five stream workers
    and the batch engine."""
    from tritonpipe.stream.replay import publisher

    root = tmp_path_factory.mktemp("modes")
    servers = {"redis": contract_redis, "nats": contract_nats, "kafka": contract_kafka}
    made: dict[str, Any] = {}
    clients = {p: Client(u) for p, u in (("http", contract_server.http_url),
                                          ("grpc", contract_server.grpc_url))}  # fmt: skip
    for sig in SIGNATURES:
        entry: dict[str, Any] = {"pipeline": Pipeline.load(contract_spec, sig.name), **clients}
        entry["engine"] = InProcessEngine(str(contract_spec), sig.name, batch_size=8, threads=1)
        for mode in STREAMS:
            kind, _, remote = mode.partition("_")
            tag = f"{sig.name}_{mode}"
            job = {"pipeline": str(contract_spec), "name": sig.name,
                   "bus": _bus(kind, tag, servers),
                   "inputs": {t["name"]: {"field": t["name"]} for t in sig.inputs},
                   "batch": {"max_events": 8, "max_wait_ms": 5}, "time_field": None}  # fmt: skip
            (root / f"{tag}.yaml").write_text(yaml.safe_dump(job))
            config = load_config(root / f"{tag}.yaml")
            url = contract_server.http_url if remote else None
            worker = build_worker(config, consumer="p", url=url)
            worker.sink = Recording(worker)  # type: ignore[assignment]
            entry[mode] = (worker, publisher(config))
        made[sig.name] = entry
    yield made
    for entry in made.values():
        for mode in STREAMS:
            worker, out = entry[mode]
            worker.close()
            out.close()
        entry["engine"].close()
    for client in clients.values():
        client.close()


COUNTER = itertools.count()


@pytest.mark.parametrize("signature", SIGNATURES, ids=[s.name for s in SIGNATURES])
def test_every_mode_gives_the_same_verdicts_reasons_and_outputs(
    signature: Signature,
    modes: dict[str, Any],
    contract_spec: Path,
    contract_postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    entry = modes[signature.name]
    contract = contract_of(signature)

    @PROFILE
    @given(batch=records(signature))
    def check(batch: list[dict[str, Any]]) -> None:
        expected = in_process(entry["pipeline"], contract, batch)
        tag = f"x{next(COUNTER)}"
        for protocol in ("http", "grpc"):
            check_verdicts(
                protocol, batch, expected, online(entry[protocol], signature.name, contract, batch)
            )
        for mode in STREAMS:
            worker, publish = entry[mode]
            worker.last_n = {  # output id -> record position
                f"{tag}{mode}-{r['id']}": n for n, r in enumerate(batch) if r.get("id")
            }
            check_verdicts(mode, batch, expected, stream(worker, publish, batch, f"{tag}{mode}"))

        # batch: absent fields are nulls in a table
        as_table = in_process(entry["pipeline"], contract, batch_mode.as_rows(signature, batch))
        source = batch_mode.write_records(signature, batch, tmp_path / tag / "in")
        outputs = {
            "parquet": {"type": "parquet", "path": str(tmp_path / tag / "out")},
            "sqlite": {"type": "sqlite", "path": str(tmp_path / tag / "out.db"), "table": tag},
            "postgresql": {"type": "postgresql", "url": contract_postgres.url, "table": tag},
        }
        for store, output in outputs.items():
            rejects = tmp_path / tag / f"rejects-{store}"
            config = batch_mode.job_config(contract_spec, signature, source, output, rejects)
            BatchJob(config, entry["engine"]).run(progress=False)
            seen = batch_mode.read_verdicts(config, contract, len(batch), output)
            check_verdicts(f"batch {store}", batch, as_table, seen)

    check()
