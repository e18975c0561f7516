"""Traces per step against a real tritonserver in OpenTelemetry mode: a request carrying the
client's ``traceparent`` (HTTP header, gRPC metadata) gets one span per step of the fused model
(stage, model, stage, prediction log) under Triton's own spans, in the client's trace; a batch
job and a stream worker running the same built model give the same step spans. The collector
is tritonpipe's loopback OTLP receiver, decoding the real protobuf (ours) and JSON (Triton's)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml

from tests.conftest import DIGITS
from tritonpipe.ensembles import build_repository
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.tracing import OtlpReceiver, ReceivedSpan

STEPS = ["stage preprocess", "model net", "stage postprocess"]
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def traced_repo(trained_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits steps fused into one model that also logs its predictions (Parquet)."""
    root = tmp_path_factory.mktemp("traced")
    (root / "stages.py").write_text((DIGITS / "stages.py").read_text())
    png = {"name": "image", "dtype": "BYTES", "shape": [1]}
    spec = {
        "stages": {
            "preprocess": {
                "function": "stages.py:preprocess",
                "inputs": [png],
                "outputs": [{"name": "pixels", "dtype": "FP32", "shape": [1, 8, 8]}],
                "max_batch_size": 8,
            },
            "postprocess": {
                "function": "stages.py:postprocess",
                "parameters": {"k": 3},
                "inputs": [{"name": "logits", "dtype": "FP32", "shape": [10]}],
                "outputs": [
                    {"name": "labels", "dtype": "INT64", "shape": [3]},
                    {"name": "probabilities", "dtype": "FP32", "shape": [3]},
                ],
                "max_batch_size": 8,
            },
        },
        "models": {"net": {"export": str(trained_export), "format": "onnx", "max_batch_size": 8}},
        "ensembles": {
            "digits": {
                "steps": ["preprocess", "net", "postprocess"],
                "log": {"sink": {"type": "parquet", "path": "predictions"}},
            }
        },
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    build_repository(root / "pipeline.yaml", root / "repo")
    return root / "repo"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_server(
    traced_repo: Path, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    # rate 0: only requests carrying a client's context are traced. Triton's exporter batches
    # for 5 s by default; 100 ms keeps the test short.
    options = ServerOptions(
        repository=traced_repo,
        exit_timeout_s=5,
        trace_url=receiver.url,
        trace_rate=0,
        extra_args=("--trace-config=opentelemetry,bsp_schedule_delay=100",),
    )
    log = tmp_path_factory.mktemp("traced_logs") / "tritonserver.log"
    with TritonServer(options, log_path=log) as running:
        yield running


def _png() -> np.ndarray:
    return np.array([[(DIGITS / "samples" / "three.png").read_bytes()]], dtype=object)


def _infer(server: TritonServer, protocol: str, headers: dict[str, str] | None) -> np.ndarray:
    module = httpclient if protocol == "http" else grpcclient
    address = (server.http_url if protocol == "http" else server.grpc_url).split("://")[1]
    client = module.InferenceServerClient(address)
    image = module.InferInput("image", [1, 1], "BYTES")
    image.set_data_from_numpy(_png())
    labels: np.ndarray = client.infer("digits", [image], headers=headers).as_numpy("labels")
    client.close()
    return labels


def _by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def _step_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return sorted((s for s in spans if "tritonpipe.step" in s.attributes), key=lambda s: s.start_ns)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_requests_trace_holds_one_span_per_step_in_the_clients_trace(
    traced_server: TritonServer, receiver: OtlpReceiver, protocol: str
) -> None:
    trace_id = os.urandom(16).hex()
    headers = {"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"}
    assert _infer(traced_server, protocol, headers)[0, 0] == 3

    def complete(spans: list[ReceivedSpan]) -> bool:
        return {"InferRequest", "digits", *STEPS, "log predictions"} <= {s.name for s in spans}

    spans = receiver.wait_for(complete, trace_id=trace_id, timeout_s=30)
    # Ours: exactly one per step, in plan order, in the client's trace, all children of the one
    # span Triton handed the model (its model span).
    steps = _step_spans(spans)
    assert [s.name for s in steps] == [*STEPS, "log predictions"], sorted(s.name for s in spans)
    assert [s.attributes["tritonpipe.step.kind"] for s in steps] == [
        "stage",
        "model",
        "stage",
        "log",
    ]
    [parent] = {s.parent_id for s in steps}
    assert parent != CLIENT_SPAN
    assert {s.attributes["tritonpipe.runner"] for s in steps} == {"triton"}
    assert steps[-1].attributes["tritonpipe.log.sink"] == "parquet"
    assert all(s.service == "tritonpipe" and s.error is None for s in steps)
    # Triton's own, from its exporter (which, on a loaded machine, now and then loses a batch):
    # the model span is that parent, under the request span, under the client's span.
    named = _by_name(spans)
    if "digits" in named and "InferRequest" in named:
        [request] = named["InferRequest"]
        [model] = named["digits"]
        assert request.parent_id == CLIENT_SPAN and model.parent_id == request.span_id
        assert model.span_id == parent
        assert model.start_ns <= steps[0].start_ns and steps[-2].end_ns <= model.end_ns


def test_a_request_triton_does_not_trace_gets_no_step_spans(
    traced_server: TritonServer, receiver: OtlpReceiver
) -> None:
    receiver.clear()
    assert _infer(traced_server, "http", None)[0, 0] == 3  # rate 0: untraced without a context
    trace_id = os.urandom(16).hex()  # a traced one after it, so the exports have caught up
    _infer(traced_server, "http", {"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"})
    receiver.wait_for(lambda s: len(_step_spans(s)) == 4, trace_id=trace_id, timeout_s=30)
    assert {s.trace_id for s in _step_spans(receiver.spans())} == {trace_id}


def _same_steps(spans: list[ReceivedSpan], runner: str) -> None:
    """Every call's step spans: the Triton model's three, in order, under the call's span."""
    roots = [s for s in spans if s.name == f"{runner} digits"]
    assert roots
    for root in roots:
        steps = [s for s in _step_spans(spans) if s.parent_id == root.span_id]
        assert [s.name for s in steps] == STEPS
        assert {s.attributes["tritonpipe.runner"] for s in steps} == {runner}


def test_a_batch_job_gives_the_same_step_spans(
    traced_repo: Path, receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonpipe.batch import parse_config, run_job

    monkeypatch.setenv("TRITONPIPE_TRACE_URL", receiver.url)
    receiver.clear()
    rows = pd.DataFrame({"id": np.arange(5), "image": [_png()[0, 0]] * 5})
    rows.to_parquet(tmp_path / "in.parquet")
    config = {
        "pipeline": str(traced_repo),
        "model": "digits",
        "source": {"type": "parquet", "path": str(tmp_path / "in.parquet")},
        "output": {"type": "parquet", "path": str(tmp_path / "out")},
        "key": ["id"],
        "batch_size": 2,
    }
    assert run_job(parse_config(config), progress=False).rows == 5
    spans = receiver.wait_for(lambda s: sum(x.name == "batch digits" for x in s) >= 3)
    _same_steps(spans, "batch")


def test_a_stream_worker_gives_the_same_step_spans(
    traced_repo: Path, receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonpipe.stream import build_worker, load_config
    from tritonpipe.stream.replay import replay

    monkeypatch.setenv("TRITONPIPE_TRACE_URL", receiver.url)
    receiver.clear()
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis").start()
    try:
        config = tmp_path / "job.yaml"
        bus = {
            "type": "redis",
            "url": redis.url,
            "stream": "in",
            "output": "out",
            "dead_letter": "dead",
        }
        config.write_text(
            yaml.safe_dump(
                {
                    "pipeline": str(traced_repo),
                    "name": "digits",
                    "bus": bus,
                    "format": "msgpack",
                    "inputs": {"image": {"field": "png"}},
                }
            )
        )
        job = load_config(config)
        png = _png()[0, 0]
        assert replay(job, [{"id": f"e{i}", "png": png} for i in range(3)]) == 3
        worker = build_worker(job, consumer="w")
        try:
            worker.handle(worker.source.read(10, 1000))
        finally:
            worker.close()
        assert worker.counts.scored == 3
    finally:
        redis.stop()
    spans = receiver.wait_for(lambda s: any(x.name == "stream digits" for x in s))
    _same_steps(spans, "stream")


def test_no_collector_listening_leaves_the_answers_alone(
    traced_server: TritonServer, receiver: OtlpReceiver
) -> None:
    """Last: the receiver stops for good; traced requests are still answered, the server up."""
    receiver.stop()
    for i in range(20):
        headers = {"traceparent": f"00-{os.urandom(16).hex()}-{CLIENT_SPAN}-01"}
        assert _infer(traced_server, "grpc" if i % 2 else "http", headers)[0, 0] == 3
    assert traced_server.is_ready()


def _infer_at(url: str, headers: dict[str, str]) -> None:
    client = httpclient.InferenceServerClient(url.split("://")[1])
    image = httpclient.InferInput("image", [1, 1], "BYTES")
    image.set_data_from_numpy(_png())
    assert client.infer("digits", [image], headers=headers).as_numpy("labels")[0, 0] == 3
    client.close()


def test_every_replica_of_serve_replicas_traces_to_the_same_url(
    traced_repo: Path, tmp_path: Path
) -> None:
    """``serve --replicas 2 --trace-url``: each replica's step spans reach the one receiver,
    and a traceparent sent through the balancer (HAProxy) reaches a replica."""
    from tritonpipe.deploy.replicas import ReplicaSet, ReplicaSetOptions

    with OtlpReceiver() as own:
        options = ReplicaSetOptions(
            repository=traced_repo,
            replicas=2,
            workdir=tmp_path / "fleet",
            exit_timeout_s=5,
            trace_url=own.url,
            trace_rate=0,
        )
        with ReplicaSet(options) as fleet:
            assert fleet.balancer is not None
            urls = [s.http_url for s in fleet.servers] + [fleet.balancer.http_url]
            traces = [os.urandom(16).hex() for _ in urls]
            for url, trace_id in zip(urls, traces, strict=True):
                _infer_at(url, {"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"})
            for trace_id in traces:
                spans = own.wait_for(lambda s: len(_step_spans(s)) == 4, trace_id=trace_id)
                assert [s.name for s in _step_spans(spans)] == [*STEPS, "log predictions"]
