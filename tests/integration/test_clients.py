"""Sync and asyncio clients, both protocols, against the real server."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tritonpipe.client import AsyncClient, Client
from tritonpipe.errors import RequestTimeout, Unavailable
from tritonpipe.server import TritonServer
from tritonpipe.server.options import free_port


@pytest.mark.parametrize("ensemble", ["digits", "digits_ts"])
def test_sync_client_classifies_pngs_through_ensemble(
    url: str, ensemble: str, heldout: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = heldout
    with Client(url) as client:
        out = client.infer(ensemble, {"image": images})  # 360 rows: split into batches of 64
    assert out["labels"].shape == (len(images), 3)
    assert out["probabilities"].dtype == np.float32
    assert (out["labels"][:, 0] == labels).mean() >= 0.95
    assert np.all(np.diff(out["probabilities"], axis=1) <= 0)  # top-k sorted


async def test_async_client_matches_sync(url: str, heldout: tuple[np.ndarray, np.ndarray]) -> None:
    images = heldout[0][:100]
    async with AsyncClient(url) as client:
        got = await client.infer("digits_ts", {"image": images})
        assert await client.is_ready()
        assert (await client.model("digits")).max_batch_size == 64
    with Client(url) as client:
        want = client.infer("digits", {"image": images})
    np.testing.assert_array_equal(got["labels"], want["labels"])
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)


def test_shared_memory_inputs(
    url: str, heldout: tuple[np.ndarray, np.ndarray], server: TritonServer
) -> None:
    images, labels = heldout
    pixels = np.random.default_rng(0).standard_normal((40, 1, 8, 8)).astype(np.float32)
    with (
        Client(url, shared_memory=True, shm_threshold_bytes=1024) as client,
        Client(server.http_url) as plain,
    ):
        out = client.infer("digits", {"image": images[:50]})
        assert (out["labels"][:, 0] == labels[:50]).mean() >= 0.9
        big = client.infer("digits_onnx", {"pixels": pixels})  # FP32 through a region
        small = client.infer("digits_onnx", {"pixels": pixels[:5]})  # the region is reused
        np.testing.assert_allclose(
            big["logits"], plain.infer("digits_onnx", {"pixels": pixels})["logits"], atol=1e-5
        )
        np.testing.assert_allclose(small["logits"], big["logits"][:5], atol=1e-5)
        regions = client._raw.get_system_shared_memory_status(
            **({"as_json": True} if client.protocol == "grpc" else {})
        )
        assert regions
    with Client(url) as after:
        status = after._raw.get_system_shared_memory_status(
            **({"as_json": True} if after.protocol == "grpc" else {})
        )
    assert not status or status == {}  # unregistered on close


def test_metadata_and_statistics(url: str) -> None:
    with Client(url) as client:
        client.infer("digits_onnx", {"pixels": np.zeros((2, 1, 8, 8), np.float32)})
        meta = client.metadata("digits")
        assert meta["name"] == "digits"
        stats = client.statistics("digits_onnx")
        assert stats["model_stats"][0]["name"] == "digits_onnx"


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_timeout_is_reported_and_not_retried(url: str, asynchronous: bool) -> None:
    x = {"x": np.ones((1, 4), np.float32)}  # slow_echo sleeps 1 s
    if asynchronous:
        async with AsyncClient(url, timeout_s=0.3) as aclient:
            await aclient.model("slow_echo")
            started = time.perf_counter()
            with pytest.raises(RequestTimeout):
                await aclient.infer("slow_echo", x)
            elapsed = time.perf_counter() - started
    else:
        with Client(url, timeout_s=0.3) as client:
            client.model("slow_echo")
            started = time.perf_counter()
            with pytest.raises(RequestTimeout):
                client.infer("slow_echo", x)
            elapsed = time.perf_counter() - started
    assert elapsed < 1.5  # one attempt: retries would add 0.3 s tries and 0.2 + 0.4 + 0.8 s waits


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_unreachable_server_is_retried_then_unavailable(scheme: str) -> None:
    port = free_port()  # nothing listens there
    started = time.perf_counter()
    with (
        Client(f"{scheme}://127.0.0.1:{port}", retries=2, backoff_s=0.1, timeout_s=2) as client,
        pytest.raises(Unavailable),
    ):
        client.model("digits")
    assert time.perf_counter() - started >= 0.3  # waited 0.1 + 0.2 between the three attempts
