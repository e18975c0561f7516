"""Triton's response cache on a pipeline with ``response_cache: true``: serve starts the cache,
a repeated request is answered from it, a new input is not."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import numpy as np
import pytest

from tests.conftest import ASSETS
from tests.integration.counted import wait_for
from tritonpipe.client import Client
from tritonpipe.ensembles import build_repository
from tritonpipe.server import ServerOptions, TritonServer

SPEC = """
stages:
  scale:
    function: test_stages.py:affine
    parameters: {scale: 2.0}
    inputs: [{name: x, dtype: FP32, shape: [4]}]
    outputs: [{name: y, dtype: FP32, shape: [4]}]
  shift:
    function: test_stages.py:affine
    parameters: {shift: 1.0}
    inputs: [{name: x, dtype: FP32, shape: [4]}]
    outputs: [{name: y, dtype: FP32, shape: [4]}]
ensembles:
  cached:
    steps: [scale, {model: shift, inputs: {x: y}, outputs: {y: z}}]
    response_cache: true
  cached_steps:
    steps: [scale, {model: shift, inputs: {x: y}, outputs: {y: z}}]
    fuse: none
    response_cache: true
  uncached:
    steps: [scale, {model: shift, inputs: {x: y}, outputs: {y: z}}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    root = tmp_path_factory.mktemp("cache")
    shutil.copyfile(ASSETS / "test_stages.py", root / "test_stages.py")
    (root / "pipeline.yaml").write_text(SPEC)
    build_repository(root / "pipeline.yaml", root / "repo")
    options = ServerOptions(repository=root / "repo", exit_timeout_s=5)
    assert any(a.startswith("--cache-config=local,size=") for a in options.arguments())
    with TritonServer(options, log_path=root / "server.log", ready_timeout_s=60) as running:
        yield running


def _stats(server: TritonServer, model: str, success: int) -> dict[str, int]:
    """The model's counts once ``success`` requests are counted (tests.integration.counted)."""

    def read() -> dict[str, int]:
        models = server.statistics()["model_stats"]
        assert isinstance(models, list)
        (stats,) = [m["inference_stats"] for m in models if m["name"] == model]
        return {k: int(stats[k]["count"]) for k in ("success", "cache_hit", "cache_miss")}

    return wait_for(read, lambda counts: counts["success"] >= success)


@pytest.mark.parametrize("model", ["cached", "cached_steps"])
def test_repeated_request_is_answered_from_the_cache(server: TritonServer, model: str) -> None:
    x = np.arange(4, dtype=np.float32).reshape(1, 4) + (model == "cached_steps") * 10
    with Client(server.http_url) as client:
        first = client.infer(model, {"x": x})
        again = client.infer(model, {"x": x})
        other = client.infer(model, {"x": x + 1})
    np.testing.assert_array_equal(first["z"], x * 2 + 1)
    np.testing.assert_array_equal(again["z"], first["z"])
    np.testing.assert_array_equal(other["z"], (x + 1) * 2 + 1)
    assert _stats(server, model, 3) == {"success": 3, "cache_hit": 1, "cache_miss": 2}


def test_a_pipeline_without_response_cache_is_not_cached(server: TritonServer) -> None:
    x = np.ones((1, 4), np.float32)
    with Client(server.http_url) as client:
        for _ in range(2):
            client.infer("uncached", {"x": x})
    assert _stats(server, "uncached", 2) == {"success": 2, "cache_hit": 0, "cache_miss": 0}
