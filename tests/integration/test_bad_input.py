"""Every bad input gets a clear error and the server keeps answering valid requests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.integration.counted import wait_for
from tritonpipe.client import AsyncClient, Client
from tritonpipe.errors import InputError, InvalidArgument, ModelNotFound
from tritonpipe.server import TritonServer


@pytest.fixture
def client(url: str, heldout: tuple[np.ndarray, np.ndarray]) -> Iterator[Client]:
    with Client(url) as c:
        yield c
        # After every bad request: still ready, still right.
        assert c.is_ready()
        out = c.infer("digits", {"image": heldout[0][:8]})
        assert (out["labels"][:, 0] == heldout[1][:8]).mean() >= 0.75


PIXELS = np.zeros((2, 1, 8, 8), np.float32)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"pixels": PIXELS.astype(np.float64)},
            "input 'pixels' is FP64 \\(float64\\) but model wants FP32",
        ),
        (
            {"pixels": np.zeros((2, 1, 8, 9), np.float32)},
            "input 'pixels' has shape \\[2, 1, 8, 9\\]; model wants FP32\\[1,8,8\\]",
        ),
        ({}, "model 'digits_onnx' input 'pixels' is missing"),
        ({"pixels": PIXELS, "extra": PIXELS}, "model 'digits_onnx' has no input 'extra'"),
        ({"pixels": np.zeros((0, 1, 8, 8), np.float32)}, "input 'pixels' is an empty batch"),
    ],
)
def test_caught_before_sending(client: Client, inputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InputError, match=message):
        client.infer("digits_onnx", inputs)


def test_corrupt_png_is_rejected_by_the_stage(
    client: Client, heldout: tuple[np.ndarray, np.ndarray]
) -> None:
    images = heldout[0][:4].copy()
    images[2, 0] = images[2, 0][:20]  # truncated PNG
    with pytest.raises(
        InvalidArgument,
        match="stage 'preprocess' rejected the request: input 'image' item 2 "
        "is not a decodable image \\(\\w+\\) \\(at stages.py:\\d+ in preprocess\\)",
    ):
        client.infer("digits", {"image": images})


def test_unknown_model(client: Client) -> None:
    with pytest.raises(ModelNotFound, match="unknown model: 'nope'"):
        client.infer("nope", {"x": PIXELS})


def test_huge_payload(client: Client) -> None:
    blob = np.array([[b"\x89PNG" + b"\0" * (64 << 20)]], dtype=object)  # 64 MiB that is no image
    with pytest.raises(InvalidArgument, match="not a decodable image"):
        client.infer("digits", {"image": blob})


def test_batch_larger_than_allowed(server: TritonServer, client: Client) -> None:
    """The server refuses it; tritonpipe's client splits it instead."""
    raw = triton_http.InferenceServerClient(server.http_url.removeprefix("http://"))
    tensor = triton_http.InferInput("pixels", [65, 1, 8, 8], "FP32")
    tensor.set_data_from_numpy(np.zeros((65, 1, 8, 8), np.float32))
    with pytest.raises(
        InferenceServerException, match="batch-size must be <= 64 for 'digits_onnx'"
    ):
        raw.infer("digits_onnx", [tensor])
    raw.close()
    assert client.infer("digits_onnx", {"pixels": np.zeros((65, 1, 8, 8), np.float32)})[
        "logits"
    ].shape == (65, 10)
    with (
        Client(server.http_url, split_batches=False) as strict,
        pytest.raises(
            InputError, match="batch of 65 is larger than model 'digits_onnx' max_batch_size 64"
        ),
    ):
        strict.infer("digits_onnx", {"pixels": np.zeros((65, 1, 8, 8), np.float32)})


async def test_bad_request_does_not_fail_its_batch_neighbours(
    url: str, server: TritonServer
) -> None:
    """Requests merged by the dynamic batcher: only the one with bad data fails."""
    before = _counts(server, "strict")
    async with AsyncClient(url) as client:
        await client.model("strict")
        batches = [np.full((1, 4), -1.0 if i == 3 else i, np.float32) for i in range(8)]
        results = await asyncio.gather(
            *(client.infer("strict", {"x": b}) for b in batches), return_exceptions=True
        )
    for i, result in enumerate(results):
        if i == 3:
            assert isinstance(result, InvalidArgument)
            assert "stage 'strict' rejected the request: input 'x' holds negative values" in str(
                result
            )
        else:
            assert not isinstance(result, BaseException), result
            np.testing.assert_array_equal(result["y"], batches[i] * 2)
    counts = wait_for(lambda: _counts(server, "strict"), lambda c: c[0] - before[0] >= 8)
    inferences, executions = (a - b for a, b in zip(counts, before, strict=True))
    assert inferences == 8 and executions < 8  # really batched together


def _counts(server: TritonServer, model: str) -> tuple[int, int]:
    stats = server.statistics()["model_stats"]
    entry = next(s for s in stats if s["name"] == model)  # type: ignore[index]
    return int(entry["inference_count"]), int(entry["execution_count"])
