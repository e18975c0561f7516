"""The raw gRPC transport against the real server: same outputs as tritonclient's client."""

from __future__ import annotations

import asyncio

import numpy as np
import tritonclient.grpc as triton_grpc

from tritonpipe.client.raw_grpc import RawGrpc, build_request, parse_response
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
