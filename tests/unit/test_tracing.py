"""Traces per step without a server: W3C context parsing, the OTLP/HTTP exporter against the
loopback receiver (real protobuf both ways), its behaviour with no collector and a full queue,
and the in-process pipeline's spans (one per step, under the caller's trace)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tritonpipe.backend.runtime import Runner
from tritonpipe.pipeline import Pipeline, PipelineError
from tritonpipe.pipeline.plans import from_spec
from tritonpipe.server.options import ServerOptions
from tritonpipe.tracing import OtlpExporter, OtlpReceiver, ReceivedSpan, Span, SpanContext
from tritonpipe.tracing.calls import CallTracing
from tritonpipe.tracing.spans import CLIENT
from tritonpipe.tracing.steps import StepTracer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"

# Not the examples' shape: a category id looked up in a table, a stage named `cat`, another
# `embedding`, and a vector of float64 the spec declares FP32.
STAGES = """
import numpy as np

TABLE = np.arange(12, dtype=np.float32).reshape(4, 3)

def cat(cat):
    if (cat < 0).any() or (cat > 3).any():
        raise ValueError("cat must be in [0, 3]")
    return {"embedding": TABLE[cat[:, 0]]}

def embedding(embedding):
    return {"score": embedding.sum(axis=1, keepdims=True)}
"""

SPEC = """
stages:
  cat:
    function: stages.py:cat
    inputs: [{name: cat, dtype: INT64, shape: [1]}]
    outputs: [{name: embedding, dtype: FP32, shape: [3]}]
    max_batch_size: 4
  embedding:
    function: stages.py:embedding
    inputs: [{name: embedding, dtype: FP32, shape: [3]}]
    outputs: [{name: score, dtype: FP32, shape: [1]}]
    max_batch_size: 4
ensembles:
  scoring:
    steps: [cat, embedding]
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "stages.py").write_text(STAGES)
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    return tmp_path / "pipeline.yaml"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> OtlpReceiver:
    with OtlpReceiver() as running:
        monkeypatch.setenv("TRITONPIPE_TRACE_URL", running.url)
        yield running  # type: ignore[misc]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _span(name: str, **attributes: str | bool | int | float) -> Span:
    parent = SpanContext.parse(TRACEPARENT)
    assert parent is not None
    return Span(name, parent.child(), parent.span_id, 1_000, 2_000, dict(attributes))


def test_traceparent_parsing() -> None:
    context = SpanContext.parse(TRACEPARENT)
    assert context is not None
    assert (context.trace_id.hex(), context.span_id.hex(), context.sampled) == (TRACE, PARENT, True)
    assert context.traceparent == TRACEPARENT
    assert SpanContext.parse(f"00-{TRACE}-{PARENT}-00").sampled is False  # type: ignore[union-attr]
    for bad in ("", "garbage", f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{'0' * 16}-01",
                f"ff-{TRACE}-{PARENT}-01", f"00-{TRACE[:-1]}-{PARENT}-01", None):  # fmt: skip
        assert SpanContext.parse(bad) is None, bad
    # What Triton's Python backend returns from request.trace().get_context().
    assert SpanContext.from_carrier(json.dumps({"traceparent": TRACEPARENT})) == context
    assert SpanContext.from_carrier(None) is None
    assert SpanContext.from_carrier("not json") is None
    assert SpanContext.from_carrier("{}") is None
    child = context.child()
    assert child.trace_id == context.trace_id and child.span_id != context.span_id


def test_exporter_sends_real_otlp_protobuf() -> None:
    with OtlpReceiver() as receiver:
        exporter = OtlpExporter(receiver.url, service="scoring-svc", interval_s=0.05)
        span = _span("stage cat", text="x", flag=True, count=3, ratio=0.5)
        span.error = "ValueError: cat must be in [0, 3]"
        exporter.submit([span, _span("stage embedding")])
        assert exporter.flush(10)
        exporter.close()
        got = receiver.wait_for(lambda s: len(s) == 2, timeout_s=10)
    first = next(s for s in got if s.name == "stage cat")
    assert first == ReceivedSpan(
        name="stage cat",
        trace_id=TRACE,
        span_id=span.context.span_id.hex(),
        parent_id=PARENT,
        service="scoring-svc",
        start_ns=1_000,
        end_ns=2_000,
        attributes={"text": "x", "flag": True, "count": 3, "ratio": 0.5},
        error="ValueError: cat must be in [0, 3]",
        kind=1,  # INTERNAL
    )
    assert exporter.exported == 2 and exporter.dropped == exporter.failures == 0


def test_receiver_reads_otlp_json_as_tritons_exporter_sends_it() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "triton-inference-server"}}
                    ]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": TRACE,
                                "spanId": "a55dbeb266f53bba",
                                "parentSpanId": PARENT,
                                "name": "InferRequest",
                                "kind": 2,
                                "startTimeUnixNano": "5",
                                "endTimeUnixNano": "9",
                                "attributes": [
                                    {"key": "triton.model_name", "value": {"stringValue": "m"}}
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    with OtlpReceiver() as receiver:
        request = urllib.request.Request(
            receiver.url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=5).read()
        bad = urllib.request.Request(receiver.url, b"\xff\x00", {"Content-Type": "x"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(bad, timeout=5)
        [span] = receiver.spans()
    assert (span.trace_id, span.span_id, span.parent_id) == (TRACE, "a55dbeb266f53bba", PARENT)
    assert (span.service, span.start_ns, span.attributes, span.kind) == (
        "triton-inference-server",
        5,
        {"triton.model_name": "m"},
        2,  # SERVER
    )
    assert receiver.rejected == 1


def test_no_collector_listening_costs_the_caller_nothing() -> None:
    exporter = OtlpExporter(f"http://127.0.0.1:{_closed_port()}/v1/traces", interval_s=0.05)
    start = time.perf_counter()
    for _ in range(100):
        exporter.submit([_span("stage cat")])
    assert time.perf_counter() - start < 1.0  # queue appends only, however slow the machine
    assert exporter.flush(10)
    exporter.close()
    assert exporter.exported == 0 and exporter.failures >= 1 and exporter.dropped == 100


def test_full_queue_drops_spans_instead_of_waiting() -> None:
    with OtlpReceiver() as receiver:
        exporter = OtlpExporter(receiver.url, queue_size=3, interval_s=60)  # nothing sent yet
        exporter.submit([_span(f"s{i}") for i in range(5)])
        exporter.submit([_span("s5")])
        assert exporter.dropped == 3
        assert exporter.flush(10)
        exporter.close()
        got = receiver.wait_for(lambda s: len(s) == 3, timeout_s=10)
    assert sorted(s.name for s in got) == ["s0", "s1", "s2"]


def _wait(receiver: OtlpReceiver, count: int) -> list[ReceivedSpan]:
    return receiver.wait_for(lambda s: len(s) >= count, trace_id=TRACE, timeout_s=15)


def test_in_process_pipeline_emits_one_span_per_step_under_the_callers_trace(
    spec: Path, receiver: OtlpReceiver
) -> None:
    pipe = Pipeline.load(spec, "scoring")
    out = pipe({"cat": np.array([[1], [3]])}, traceparent=TRACEPARENT)
    assert out["score"].ravel().tolist() == [12.0, 30.0]
    spans = {s.name: s for s in _wait(receiver, 3)}
    assert set(spans) == {"pipeline scoring", "stage cat", "stage embedding"}
    root = spans["pipeline scoring"]
    assert root.parent_id == PARENT and root.service == "tritonpipe"
    for name, position in (("stage cat", 0), ("stage embedding", 1)):
        step = spans[name]
        assert step.parent_id == root.span_id
        assert step.attributes["tritonpipe.step.kind"] == "stage"
        assert step.attributes["tritonpipe.step.position"] == position
        assert step.attributes["tritonpipe.runner"] == "pipeline"
        assert root.start_ns <= step.start_ns <= step.end_ns <= root.end_ns
    assert spans["stage cat"].end_ns <= spans["stage embedding"].start_ns


def test_a_failing_step_is_an_error_span_and_an_unsampled_parent_is_not_traced(
    spec: Path, receiver: OtlpReceiver
) -> None:
    pipe = Pipeline.load(spec, "scoring")
    with pytest.raises(PipelineError, match="cat must be in"):
        pipe({"cat": np.array([[7]])}, traceparent=TRACEPARENT)
    spans = {s.name: s for s in _wait(receiver, 2)}
    assert set(spans) == {"pipeline scoring", "stage cat"}  # embedding never ran
    assert "cat must be in [0, 3]" in (spans["stage cat"].error or "")
    assert spans["pipeline scoring"].error is not None
    receiver.clear()
    pipe({"cat": np.array([[0]])}, traceparent=f"00-{TRACE}-{PARENT}-00")
    pipe({"cat": np.array([[0]])})  # no parent: a trace of its own
    spans = receiver.wait_for(lambda s: len(s) >= 3, timeout_s=15)
    assert {s.trace_id for s in spans} != {TRACE} and len(spans) == 3


def test_a_call_to_a_server_is_a_client_span_whose_traceparent_goes_with_it() -> None:
    """CallTracing (batch jobs, stream workers scoring on Triton): the headers it yields name
    its own span, a client span under the given parent (or a new trace's root); a failed call
    is an error span; an unsampled parent is passed on untouched, with no span."""
    with OtlpReceiver() as receiver:
        exporter = OtlpExporter(receiver.url, interval_s=0.05)
        calls = CallTracing(exporter, label="batch", model="scorer", server="grpc://h:8001")
        with calls.call(4, traceparent=TRACEPARENT) as under_parent:
            pass
        with calls.call(2) as new_trace:
            pass
        with pytest.raises(ValueError), calls.call(1) as failed:
            raise ValueError("refused")
        unsampled = f"00-{TRACE}-{PARENT}-00"
        with calls.call(1, traceparent=unsampled) as passed_on:
            pass
        assert passed_on == {"traceparent": unsampled}
        exporter.flush(10)
        spans = receiver.wait_for(lambda s: len(s) >= 3, timeout_s=10)
        exporter.close()
    assert len(spans) == 3
    by_id = {s.span_id: s for s in spans}
    for headers in (under_parent, new_trace, failed):
        sent = SpanContext.parse(headers["traceparent"])
        assert sent is not None and sent.sampled
        span = by_id[sent.span_id.hex()]
        assert span.trace_id == sent.trace_id.hex()
        assert (span.name, span.kind) == ("batch scorer", CLIENT)
        assert span.attributes["tritonpipe.runner"] == "batch"
        assert span.attributes["server.address"] == "grpc://h:8001"
    first = by_id[under_parent["traceparent"].split("-")[2]]
    assert (first.trace_id, first.parent_id) == (TRACE, PARENT)
    assert first.attributes["tritonpipe.call.rows"] == 4
    root = by_id[new_trace["traceparent"].split("-")[2]]
    assert root.parent_id == "" and root.trace_id != TRACE and root.error is None
    assert by_id[failed["traceparent"].split("-")[2]].error == "ValueError: refused"


def test_call_tracing_is_on_with_the_same_settings_as_the_in_process_tracing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TRITONPIPE_TRACE_URL", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    assert CallTracing.from_env(label="stream", model="m") is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    on = CallTracing.from_env(label="stream", model="m")
    assert on is not None and on.exporter.url == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert CallTracing.from_env(label="stream", model="m") is None


def test_without_a_trace_url_nothing_is_hooked(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRITONPIPE_TRACE_URL", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_ENDPOINT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    pipe = Pipeline.load(spec, "scoring")
    assert pipe._tracing is None and pipe._runner.on_step is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert Pipeline.load(spec, "scoring")._tracing is not None
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert Pipeline.load(spec, "scoring")._tracing is None


def test_a_merged_batch_is_one_span_per_step_under_each_traced_request(spec: Path) -> None:
    """As Triton's dynamic batcher merges requests: each traced request gets the step spans of
    the run that served it; an untraced one gets none; a merged run that fails, then each
    request alone, shows as both."""
    runner = Runner(from_spec(spec, "scoring"), spec.parent)
    with OtlpReceiver() as receiver:
        exporter = OtlpExporter(receiver.url, interval_s=0.05)
        tracer = StepTracer(runner, exporter, label="triton")
        parents = [SpanContext.new_trace(), None, SpanContext.new_trace()]
        tracer.begin(parents)
        requests = [{"cat": np.array([[i]])} for i in (0, 1, 2)]
        assert all(isinstance(r, dict) for r in runner.run_requests(requests))
        tracer.end()
        tracer.begin(parents)
        bad = [{"cat": np.array([[0]])}, {"cat": np.array([[1]])}, {"cat": np.array([[9]])}]
        results = runner.run_requests(bad)
        tracer.end()
        assert exporter.flush(10)
        # 2 steps x 2 traced; failed merge: cat x 2; alone: 2 (first) + 0 (untraced) + 1 (third)
        spans = receiver.wait_for(lambda s: len(s) >= 9, timeout_s=10)
    first, third = (p.trace_id.hex() for p in parents if p is not None)  # type: ignore[misc]
    mine = [s for s in spans if s.trace_id == first]
    # Merged run (2 spans), then the failed merged run (1: cat) and the lone run (2).
    assert [s.name for s in mine] == ["stage cat", "stage embedding"] + [
        "stage cat",
        "stage cat",
        "stage embedding",
    ]
    assert mine[0].attributes["tritonpipe.batch.requests"] == 3
    assert mine[2].error is not None and mine[3].attributes["tritonpipe.batch.requests"] == 1
    theirs = [s for s in spans if s.trace_id == third]
    assert [s.error is not None for s in theirs if s.name == "stage cat"] == [False, True, True]
    assert isinstance(results[2], Exception) and len(spans) == 9


def test_server_options_start_tritons_tracing_and_tell_the_models(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\n')
    off = ServerOptions(repository=tmp_path)
    assert off.environment() == {} and not any("trace" in a for a in off.arguments())
    url = "http://tempo:4318/v1/traces"
    on = ServerOptions(repository=tmp_path, trace_url=url, trace_rate=0)
    args = on.arguments()
    assert "--trace-config=mode=opentelemetry" in args
    assert f"--trace-config=opentelemetry,url={url}" in args
    assert "--trace-config=rate=0" in args
    assert on.environment() == {"TRITONPIPE_TRACE_URL": url}
    assert f"-e TRITONPIPE_TRACE_URL={url}" in on.docker_command()


def test_step_kinds_name_lookups_and_models() -> None:
    from types import SimpleNamespace

    from tritonpipe.tracing.spans import step_kind

    def step(kind: str, file: str = "", function: str = "") -> SimpleNamespace:
        return SimpleNamespace(kind=kind, file=file, function=function)

    # A feature lookup is the stage `build` generates: lookup_<name>.py, function lookup.
    assert step_kind(step("stage", "/m/1/lookup_user_features.py", "lookup")) == "lookup"
    assert step_kind(step("stage", "stages.py", "lookup")) == "stage"
    assert step_kind(step("stage", "lookup_cat.py", "cat")) == "stage"
    assert {step_kind(step(k)) for k in ("onnx", "torchscript", "aoti")} == {"model"}


def test_tracing_refuses_to_start_without_its_protobuf_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from tritonpipe.errors import TritonPipeError

    monkeypatch.setitem(
        sys.modules, "opentelemetry.proto.collector.trace.v1.trace_service_pb2", None
    )
    with pytest.raises(TritonPipeError, match=r"needs opentelemetry-proto: pip install"):
        OtlpExporter("http://127.0.0.1:4318/v1/traces")
