"""The raw gRPC transports against the real server: same outputs as tritonclient's client,
the server's errors as grpcio reports them."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import tritonclient.grpc as triton_grpc

from tests.integration.counted import wait_for
from tritonpipe.client.raw_grpc import RawGrpc, build_request, parse_response
from tritonpipe.client.raw_h2 import BlockingH2Grpc
from tritonpipe.server import TritonServer


def test_prebuilt_request_gets_the_same_outputs_as_tritonclient(
    server: TritonServer, heldout: tuple[np.ndarray, np.ndarray]
) -> None:
    address = server.grpc_url.split("://")[1]
    images = heldout[0][:5]
    request = build_request(
        "digits", {"image": images}, {"image": "BYTES"}, ["labels", "probabilities"]
    )

    async def call() -> tuple[bytes, tuple[float, float, str | None]]:
        transport = RawGrpc(address, 10.0)
        try:
            raw = await transport.call(request, timeout=10.0)
            return raw, await transport.infer(request)
        finally:
            await transport.close()

    raw, (_, _, error) = asyncio.run(call())
    assert error is None
    response = parse_response(raw)
    outputs = {o.name: i for i, o in enumerate(response.outputs)}
    labels = np.frombuffer(response.raw_output_contents[outputs["labels"]], np.int64).reshape(5, 3)
    client = triton_grpc.InferenceServerClient(address)
    tensor = triton_grpc.InferInput("image", [5, 1], "BYTES")
    tensor.set_data_from_numpy(images)
    expected = client.infer("digits", [tensor])
    np.testing.assert_array_equal(labels, expected.as_numpy("labels"))
    probabilities = np.frombuffer(
        response.raw_output_contents[outputs["probabilities"]], np.float32
    ).reshape(5, 3)
    np.testing.assert_array_equal(probabilities, expected.as_numpy("probabilities"))
    assert (labels[:, 0] == heldout[1][:5]).mean() >= 0.8  # it is the digit classifier


def test_failures_carry_the_status_and_the_servers_message(server: TritonServer) -> None:
    address = server.grpc_url.split("://")[1]
    pixels = np.zeros((1, 1, 8, 8), np.float32)

    async def call(model: str, dtype: str) -> str | None:
        transport = RawGrpc(address, 10.0)
        try:
            request = build_request(model, {"pixels": pixels}, {"pixels": dtype}, ["logits"])
            return (await transport.infer(request))[2]
        finally:
            await transport.close()

    assert asyncio.run(call("digits_onnx", "FP32")) is None
    missing = asyncio.run(call("no_such_model", "FP32"))
    assert missing is not None and missing.startswith("[NOT_FOUND]") and "no_such_model" in missing
    wrong = asyncio.run(call("digits_onnx", "INT32"))
    assert wrong is not None and wrong.startswith("[INVALID_ARGUMENT]")


def _served(address: str, model: str) -> int:
    stats = triton_grpc.InferenceServerClient(address).get_inference_statistics(model, as_json=True)
    return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))


def test_the_http2_transport_serves_threads_each_on_its_own_connection(
    server: TritonServer,
) -> None:
    address = server.grpc_url.split("://")[1]
    # 64 rows: a message larger than one HTTP/2 frame (16 KiB), sent as two DATA frames.
    pixels = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)
    request = build_request("digits_onnx", {"pixels": pixels}, {"pixels": "FP32"}, ["logits"])
    transport = BlockingH2Grpc(address, 10.0)
    before = _served(address, "digits_onnx")
    errors: list[str | None] = []

    def work() -> None:
        for _ in range(25):
            errors.append(transport.infer(request)[2])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    transport.close()
    assert errors == [None] * 100
    assert len(transport.connections) == 0  # closed, and each thread had its own
    served = wait_for(lambda: _served(address, "digits_onnx"), lambda n: n - before >= 100)
    assert served - before == 100


def test_the_http2_transport_reports_grpc_failures_and_keeps_working(
    server: TritonServer,
) -> None:
    address = server.grpc_url.split("://")[1]
    pixels = np.zeros((1, 1, 8, 8), np.float32)
    transport = BlockingH2Grpc(address, 10.0, headers={"X-Trace": "t1"})
    try:
        ok = build_request("digits_onnx", {"pixels": pixels}, {"pixels": "FP32"}, ["logits"])
        missing = transport.infer(build_request("nope", {"pixels": pixels}, {"pixels": "FP32"}, []))
        assert missing[2] is not None and missing[2].startswith("[NOT_FOUND]")
        assert "nope" in missing[2]
        # A message of 1 MiB, past the server's initial flow-control windows (64 KiB): sent as
        # the server opens them, then refused for its shape.
        big = build_request(
            "digits_onnx",
            {"pixels": np.zeros((4096, 1, 8, 8), np.float32)},
            {"pixels": "FP32"},
            ["logits"],
        )
        refused = transport.infer(big)[2]
        assert refused is not None and refused.startswith("[INVALID_ARGUMENT]"), refused
        assert transport.infer(ok)[2] is None  # the same connection goes on
        assert len(transport.connections) == 1
    finally:
        transport.close()


def test_the_http2_transport_reports_a_server_that_is_gone() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = BlockingH2Grpc(f"127.0.0.1:{port}", 2.0)
    error = transport.infer(b"")[2]
    assert error is not None and "refused" in error.lower()
