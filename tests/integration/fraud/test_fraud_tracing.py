"""A real Feast lookup traced: the fraud pipeline reading a Redis online store, served by a real
tritonserver with OpenTelemetry tracing on, gives a ``lookup`` span in the client's trace (the
loopback OTLP receiver decodes the real protobuf)."""

from __future__ import annotations

import os
from pathlib import Path

import tritonclient.http as triton_http

from tests.integration.fraud.test_fraud_pipeline import DTYPES, arrays, heldout
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.tracing import OtlpReceiver

CLIENT_SPAN = "00f067aa0ba902b7"


def test_a_redis_feast_lookup_has_its_span_in_the_clients_trace(
    fraud_repository: Path, fraud_world: Path, tmp_path: Path
) -> None:
    rows = {n: v[:2] for n, v in arrays(heldout(fraud_world).iloc[:2]).items()}
    with OtlpReceiver() as receiver:
        options = ServerOptions(
            repository=fraud_repository,
            exit_timeout_s=20,
            trace_url=receiver.url,
            trace_rate=0,  # only requests carrying a client's context
            extra_args=("--trace-config=opentelemetry,bsp_schedule_delay=100",),
        )
        with TritonServer(options, log_path=tmp_path / "server.log") as server:
            client = triton_http.InferenceServerClient(server.http_url.split("://", 1)[-1])
            inputs = []
            for name, value in rows.items():
                tensor = triton_http.InferInput(name, list(value.shape), DTYPES[name])
                tensor.set_data_from_numpy(value)
                inputs.append(tensor)
            trace_id = os.urandom(16).hex()
            headers = {"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"}
            result = client.infer("fraud_redis_store", inputs, headers=headers)
            client.close()
            assert result.as_numpy("entity_found").all()  # the rows' accounts are in Redis
            spans = receiver.wait_for(
                lambda s: any(x.name == "lookup lookup_redis" for x in s), trace_id=trace_id
            )
    lookups = [s for s in spans if s.name == "lookup lookup_redis"]
    assert len(lookups) == 1, sorted(s.name for s in spans)
    (lookup,) = lookups
    assert lookup.trace_id == trace_id and lookup.error is None
    assert lookup.attributes["tritonpipe.step.kind"] == "lookup"
    assert lookup.attributes["tritonpipe.batch.requests"] == 1
    assert lookup.end_ns > lookup.start_ns
    model = [s for s in spans if s.attributes.get("tritonpipe.step.kind") == "model"]
    assert [s.parent_id for s in model] == [lookup.parent_id]  # the scorer, beside it
