"""The issue-18 property: the same records through every mode get the same verdicts, the same
reason for each refused record and equal outputs for each accepted one.

Modes: in-process (the records contract, then ``Pipeline.run_requests``), online over HTTP and
gRPC (the contract's conversion, then one request per record to the session's tritonserver),
stream on Redis with the embedded pipeline and on NATS scoring on the server (``--url``).
Outputs compare bit-equal: every mode scores one record per request, so batch composition
never differs. The binary-output signature skips the stream modes (a JSON output record cannot
hold bytes; such an event is dead-lettered with the reason, see test_event_verdicts).

CI runs ``HYPOTHESIS_PROFILE=ci`` (the default: a few examples per signature); run many with
``HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/integration/contract``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.contract.conftest import SIGNATURES, Signature
from tritonpipe.client import Client
from tritonpipe.errors import ClientError, PipelineError
from tritonpipe.pipeline import Pipeline
from tritonpipe.records import Contract
from tritonpipe.server import TritonServer
from tritonpipe.server.nats_server import NatsServer
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import build_worker, load_config
from tritonpipe.stream.scoring import served_options
from tritonpipe.stream.worker import Worker
from tritonpipe.tensors import TensorSpec

settings.register_profile(
    "ci", max_examples=6, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "thorough", max_examples=200, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

WRONG = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(float("-inf")),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=4),
)


def _good(tensor: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value the input takes (mostly), or one just outside its declared range."""
    dtype, width = tensor["dtype"], tensor["shape"][0]
    if dtype == "BYTES":
        one: st.SearchStrategy[Any] = st.text(min_size=1, max_size=5)  # non-ASCII included
    elif dtype == "BOOL":
        one = st.booleans()
    elif dtype.startswith("INT"):
        low, high = tensor["range"]
        one = st.integers(low - 1, high + 1)
    else:
        one = st.floats(-1e6, 1e6, allow_nan=False, width=32 if dtype == "FP32" else 64)
        if tensor.get("allow_nan"):
            one = st.one_of(one, st.just(float("nan")))
    return one if width == 1 else st.lists(one, min_size=width, max_size=width)


@st.composite
def records(draw: Any, signature: Signature) -> list[dict[str, Any]]:
    """A few records: ids unique, or missing, null or empty; each value a good one, a wrong one
    (null, NaN, Inf, another type, another length) or left out."""
    out = []
    for n in range(draw(st.integers(1, 5))):
        record: dict[str, Any] = {}
        kind = draw(st.sampled_from(["ok"] * 12 + ["missing", "null", "empty"]))
        if kind != "missing":
            record["id"] = {"ok": f"r{n}", "null": None, "empty": ""}[kind]
        for tensor in signature.inputs:
            choice = draw(st.sampled_from(["good"] * 8 + ["wrong", "absent"]))
            if choice == "good":
                record[tensor["name"]] = draw(_good(tensor))
            elif choice == "wrong":
                record[tensor["name"]] = draw(WRONG)
        out.append(record)
    return out


def _contract(signature: Signature) -> Contract:
    """The contract as the spec declares it: ranges, NaN, binary outputs."""
    specs = [
        TensorSpec(name=t["name"], dtype=t["dtype"], shape=tuple(t["shape"]))
        for t in signature.inputs
    ]
    outs = [
        TensorSpec(name=t["name"], dtype=t["dtype"], shape=tuple(t["shape"]))
        for t in signature.outputs
    ]
    return Contract.from_specs(
        specs,
        outs,
        ranges={t["name"]: t["range"] for t in signature.inputs if "range" in t},
        allow_nan=[t["name"] for t in signature.inputs if t.get("allow_nan")],
        binary=[t["name"] for t in signature.outputs if t.get("binary")],
    )


Verdict = tuple[str, Any]  # ("ok", output record) or ("refused", reason)


def _rows(converted: Any, n: int) -> dict[str, np.ndarray]:
    return {k: v[n : n + 1] for k, v in converted.inputs.items()}


def in_process(
    pipeline: Pipeline, contract: Contract, batch: list[dict[str, Any]]
) -> list[Verdict]:
    converted = contract.from_records(batch, id_field="id")
    refused = {r.row: r.reason for r in converted.refusals}
    todo = [n for n in range(len(batch)) if n not in refused]
    results = pipeline.run_requests([_rows(converted, n) for n in todo])
    verdicts: list[Verdict] = [("refused", refused.get(n, "")) for n in range(len(batch))]
    for n, result in zip(todo, results, strict=True):
        if isinstance(result, PipelineError):
            verdicts[n] = ("refused", str(result))
        else:
            values, failures = contract.to_records(result)
            verdicts[n] = ("refused", failures[0].reason) if failures else ("ok", values[0])
    return verdicts


def online(
    client: Client, name: str, contract: Contract, batch: list[dict[str, Any]]
) -> list[Verdict]:
    """What a caller of the server sees: the contract as the served model publishes it (its
    config's input rules), one request per record."""
    options = served_options(client.model(name).config) or {}
    served = Contract.from_specs([r.spec for r in contract.inputs], [], **options)
    converted = served.from_records(batch, id_field="id")
    refused = {r.row: r.reason for r in converted.refusals}
    verdicts: list[Verdict] = []
    for n in range(len(batch)):
        if n in refused:
            verdicts.append(("refused", refused[n]))
            continue
        try:
            result = client.infer(name, _rows(converted, n))
        except ClientError as exc:
            verdicts.append(("refused", str(exc)))
            continue
        values, failures = contract.to_records(result)
        verdicts.append(("refused", failures[0].reason) if failures else ("ok", values[0]))
    return verdicts


def stream(worker: Worker, publish: Any, batch: list[dict[str, Any]], tag: str) -> list[Verdict]:
    """Publish the records (a hidden ``_n`` says which is which), run the worker until each is
    written or dead-lettered, and read both back."""
    bodies = []
    for n, record in enumerate(batch):
        event = dict(record)
        if isinstance(event.get("id"), str) and event["id"]:
            event["id"] = f"{tag}-{event['id']}"
        bodies.append(json.dumps({**event, "_n": n}).encode())
    publish.publish(bodies)
    handled = 0
    while handled < len(batch):
        handled += worker.step()
    return [worker.verdicts.pop(n) for n in range(len(batch))]  # type: ignore[attr-defined]


class Recording:
    """Wraps a worker's sink: keeps each event's outcome by its ``_n``."""

    def __init__(self, worker: Worker) -> None:
        self.inner, self.worker = worker.sink, worker
        worker.verdicts = {}  # type: ignore[attr-defined]

    def write(self, outputs: Any) -> list[bool]:
        for out in outputs:
            record = json.loads(out.body)
            n = self.worker.last_n[record["id"]]  # type: ignore[attr-defined]
            self.worker.verdicts[n] = ("ok", record["outputs"])  # type: ignore[attr-defined]
        return self.inner.write(outputs)

    def dead_letter(self, message: Any, reason: str) -> None:
        n = json.loads(message.body)["_n"]
        self.worker.verdicts[n] = ("refused", reason)  # type: ignore[attr-defined]
        self.inner.dead_letter(message, reason)

    def close(self) -> None:
        self.inner.close()


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, float) and isinstance(got, float):
        return (math.isnan(expected) and math.isnan(got)) or expected == got
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(map(_same, expected, got))
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(_same(expected[k], got[k]) for k in expected)
    return bool(expected == got) and type(expected) is type(got)


@pytest.fixture(scope="module")
def modes(
    contract_spec: Path,
    contract_server: TritonServer,
    contract_redis: RedisServer,
    contract_nats: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """Per signature: the in-process pipeline, HTTP and gRPC clients, and two stream workers."""
    from tritonpipe.stream.replay import publisher

    root = tmp_path_factory.mktemp("modes")
    made: dict[str, Any] = {}
    clients = {p: Client(u) for p, u in (("http", contract_server.http_url),
                                          ("grpc", contract_server.grpc_url))}  # fmt: skip
    for sig in SIGNATURES:
        entry: dict[str, Any] = {"pipeline": Pipeline.load(contract_spec, sig.name), **clients}
        if not sig.binary:
            for kind, url in (("redis", None), ("nats", contract_server.http_url)):
                tag = f"{sig.name}_{kind}"
                bus = (
                    {"type": "redis", "url": contract_redis.url, "stream": f"{tag}:in",
                     "output": f"{tag}:out", "dead_letter": f"{tag}:dead"}
                    if kind == "redis"
                    else {"type": "nats", "url": contract_nats.url, "stream": tag.upper(),
                          "subject": f"{tag}.in", "output": f"{tag}.out",
                          "dead_letter": f"{tag}.dead"}
                )  # fmt: skip
                job = {"pipeline": str(contract_spec), "name": sig.name, "bus": bus,
                       "inputs": {t["name"]: {"field": t["name"]} for t in sig.inputs},
                       "batch": {"max_events": 8, "max_wait_ms": 5}, "time_field": None}  # fmt: skip
                (root / f"{tag}.yaml").write_text(yaml.safe_dump(job))
                config = load_config(root / f"{tag}.yaml")
                worker = build_worker(config, consumer="p", url=url)
                worker.sink = Recording(worker)  # type: ignore[assignment]
                entry[kind] = (worker, publisher(config))
        made[sig.name] = entry
    yield made
    for entry in made.values():
        for kind in ("redis", "nats"):
            if kind in entry:
                worker, out = entry[kind]
                worker.close()
                out.close()
    for client in clients.values():
        client.close()


COUNTER = itertools.count()


@pytest.mark.parametrize("signature", SIGNATURES, ids=[s.name for s in SIGNATURES])
def test_every_mode_gives_the_same_verdicts_reasons_and_outputs(
    signature: Signature, modes: dict[str, Any]
) -> None:
    entry = modes[signature.name]
    contract = _contract(signature)

    @given(batch=records(signature))
    def check(batch: list[dict[str, Any]]) -> None:
        expected = in_process(entry["pipeline"], contract, batch)
        seen = {p: online(entry[p], signature.name, contract, batch) for p in ("http", "grpc")}
        tag = f"x{next(COUNTER)}"
        for kind in ("redis", "nats"):
            if kind in entry:
                worker, publish = entry[kind]
                worker.last_n = {  # output id -> record position
                    f"{tag}-{r['id']}": n for n, r in enumerate(batch) if r.get("id")
                }
                seen[kind] = stream(worker, publish, batch, tag)
        for mode, verdicts in seen.items():
            for n, ((want, value), (got, other)) in enumerate(zip(expected, verdicts, strict=True)):
                where = f"{mode}, record {n} {batch[n]!r}"
                assert got == want, f"{where}: in-process {want} {value!r}, {mode} {got} {other!r}"
                if want == "refused":
                    assert value in other or other in value, f"{where}: {value!r} vs {other!r}"
                else:
                    assert _same(value, other), f"{where}: outputs {value!r} vs {other!r}"

    check()
