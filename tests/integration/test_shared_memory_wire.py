"""Shared memory really carries the data: through a recording proxy, requests name a region and
hold no tensor bytes; the server lists the regions; the same region serves every call. Sync and
asyncio clients, HTTP and gRPC, and the load generator's two transports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.integration.wiretap import Wiretap
from tritonpipe.client import AsyncClient, Client
from tritonpipe.perf.generator import ProfileOptions, Profiler
from tritonpipe.server import TritonServer


def _port(url: str) -> int:
    return int(urlsplit(url).port or 0)


def _pixels(seed: int, rows: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 1, 8, 8)).astype(np.float32)


def _regions(client: Client) -> list[str]:
    status = client._raw.get_system_shared_memory_status(
        **({"as_json": True} if client.protocol == "grpc" else {})
    )
    entries = status.get("regions", {}) if isinstance(status, dict) else status
    if isinstance(entries, dict):  # gRPC JSON: {"regions": {name: {...}}}
        return sorted(entries)
    return sorted(r["name"] for r in entries)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sync_client_sends_region_references_not_tensor_bytes(
    server: TritonServer, protocol: str
) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    first, second = _pixels(1), _pixels(2)
    with Client(server.http_url) as plain:
        want = [plain.infer("digits_onnx", {"pixels": p})["logits"] for p in (first, second)]
    with (
        Wiretap(_port(url)) as tap,
        Client(
            f"{protocol}://127.0.0.1:{tap.port}", shared_memory=True, shm_threshold_bytes=64
        ) as client,
        Client(url) as observer,
    ):
        got = [client.infer("digits_onnx", {"pixels": first})["logits"]]
        assert client.core.pool is not None
        names = client.core.pool.names()
        handle = client.core.pool.regions["pixels"].handle
        assert len(names) == 1 and names[0] in _regions(observer)
        got.append(client.infer("digits_onnx", {"pixels": second})["logits"])
        # The same region, neither recreated nor registered again.
        assert client.core.pool.names() == names
        assert client.core.pool.regions["pixels"].handle is handle
        sent = tap.sent()
    assert first.tobytes() not in sent and second.tobytes() not in sent
    assert sent.count(names[0].encode()) >= 2  # one registration and two requests name it
    if protocol == "http":
        assert sent.count(b"/register") == 1 and b"/unregister" not in sent
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)  # the server read the region's contents


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_async_client_sends_region_references_not_tensor_bytes(
    server: TritonServer, protocol: str
) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    first, second = _pixels(3), _pixels(4)
    with Client(url) as plain:
        want = [plain.infer("digits_onnx", {"pixels": p})["logits"] for p in (first, second)]
    with Wiretap(_port(url)) as tap:
        async with AsyncClient(
            f"{protocol}://127.0.0.1:{tap.port}", shared_memory=True, shm_threshold_bytes=64
        ) as client:
            got = [(await client.infer("digits_onnx", {"pixels": first}))["logits"]]
            assert client.core.pool is not None
            names = client.core.pool.names()
            handle = client.core.pool.regions["pixels"].handle
            with Client(url) as observer:
                assert len(names) == 1 and names[0] in _regions(observer)
            got.append((await client.infer("digits_onnx", {"pixels": second}))["logits"])
            assert client.core.pool.names() == names  # the same region, reused
            assert client.core.pool.regions["pixels"].handle is handle
            sent = tap.sent()  # before close() unregisters the region
    assert first.tobytes() not in sent and second.tobytes() not in sent
    assert sent.count(names[0].encode()) >= 2
    if protocol == "http":
        assert sent.count(b"/register") == 1 and b"/unregister" not in sent
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)


@pytest.mark.parametrize(
    ("protocol", "transport"), [("http", "tritonclient"), ("grpc", "tritonclient"), ("http", "raw")]
)
def test_generator_shared_memory_sends_no_tensor_bytes(
    server: TritonServer, tmp_path: Path, protocol: str, transport: str
) -> None:
    pixels = _pixels(5, rows=1)[0]
    data = tmp_path / "pixels.json"
    data.write_text(json.dumps({"data": [{"pixels": pixels.tolist()}]}))
    url = server.http_url if protocol == "http" else server.grpc_url
    for shared_memory in ("system", "none"):
        with Wiretap(_port(url)) as tap:
            options = ProfileOptions(
                model="digits_onnx",
                url=f"{protocol}://127.0.0.1:{tap.port}",
                loads=(1,),
                measurement_interval_ms=100,
                max_trials=3,
                stability_percentage=100,
                input_data=str(data),
                shared_memory=shared_memory,
                transport=transport,
            )
            [level] = asyncio.run(Profiler(options).run())
            sent = tap.sent()
        assert level.errors == 0 and level.requests > 0, level.first_error
        if shared_memory == "system":
            assert pixels.tobytes() not in sent
            assert sent.count(b"tritonpipe_perf_") > level.requests  # each request names it
        else:  # the same check sees the bytes when they do go inline
            assert sent.count(pixels.tobytes()) >= level.requests
