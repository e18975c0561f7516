"""Exported models served for real: the variable-length encoder in every format at mixed lengths
over HTTP and gRPC, and the digits pipeline through an AOTInductor-compiled CNN."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import DIGITS, ENCODER
from tests.integration.counted import wait_for
from tritonpipe.client import Client
from tritonpipe.ensembles import build_repository
from tritonpipe.loading import load_function
from tritonpipe.server import ServerOptions, TritonServer

FORMATS = ("onnx", "torchscript", "aoti")
# Lengths mixed on purpose; the repeats give the dynamic batcher equal shapes to merge.
LENGTHS = [24, 1, 37, 24, 5, 24, 37, 24, 1, 24, 60, 24]


@pytest.fixture(scope="module")
def served(
    encoder_export: Path, trained_export: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    root = tmp_path_factory.mktemp("export-serving")
    spec = {
        "models": {
            f"encoder_{fmt}": {
                "export": str(encoder_export),
                "format": fmt,
                "max_batch_size": 64,
                # Long enough that concurrent requests of one length meet in the queue.
                "dynamic_batching": {"max_queue_delay_microseconds": 50000},
            }
            for fmt in FORMATS
        }
    }
    (root / "encoder.yaml").write_text(yaml.safe_dump(spec))
    repo = build_repository(root / "encoder.yaml", root / "repo")
    # Each model's plan (what the runtime runs) names the format it loads.
    plans = [json.loads((root / "repo" / name / "1" / "plan.json").read_text()) for name in repo]
    assert {p["steps"][0]["kind"] for p in plans} == set(FORMATS)
    digits = load_function(f"{DIGITS / 'aoti.py'}:build")(root / "digits")
    for folder in digits.iterdir():
        folder.rename(root / "repo" / folder.name)
    options = ServerOptions(repository=root / "repo", exit_timeout_s=5)
    with TritonServer(options, log_path=root / "tritonserver.log") as server:
        yield server


def _eager(tokens: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = load_function(f"{ENCODER}:encoder")()(torch.from_numpy(tokens))
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_encoder_serves_mixed_lengths_like_eager(
    served: TritonServer, fmt: str, protocol: str
) -> None:
    model = f"encoder_{fmt}"
    url = served.http_url if protocol == "http" else served.grpc_url
    rng = np.random.default_rng(len(fmt) + len(protocol))
    requests = [
        rng.integers(0, 1000, (1 + i % 2, n)).astype(np.int64) for i, n in enumerate(LENGTHS)
    ]
    # Every thread connects and reads the model's config first, then all send at once, so
    # equal-length requests meet in the batcher's queue even on a loaded machine. The statistics
    # are read once every warm-up is done, just before the release.
    counts: dict[str, dict[str, str]] = {}

    def snapshot() -> None:
        with Client(url) as client:
            counts["before"] = client.statistics(model)["model_stats"][0]

    start = threading.Barrier(len(requests), action=snapshot)

    def send(tokens: np.ndarray) -> dict[str, np.ndarray]:
        with Client(url) as client:
            client.infer(model, {"tokens": tokens[:1, :1]})  # warm: connection and config
            start.wait(timeout=60)
            return client.infer(model, {"tokens": tokens})

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(send, requests))
    for tokens, got in zip(requests, answers, strict=True):
        want = _eager(tokens)
        assert got["hidden"].shape == (len(tokens), tokens.shape[1], 32)
        np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(got["hidden"], want["hidden"], atol=1e-4, rtol=1e-3)
    before = counts["before"]
    rows = sum(len(t) for t in requests)

    def read() -> dict[str, Any]:
        with Client(url) as client:
            return client.statistics(model)["model_stats"][0]  # type: ignore[no-any-return]

    after = wait_for(
        read, lambda a: int(a["inference_count"]) - int(before["inference_count"]) >= rows
    )
    requests_seen = int(after["inference_count"]) - int(before["inference_count"])
    executions = int(after["execution_count"]) - int(before["execution_count"])
    assert requests_seen == sum(len(t) for t in requests)
    # Equal-length requests were merged (fewer executions than requests), unequal ones were not
    # (at least one execution per distinct length).
    assert len(set(LENGTHS)) <= executions < len(requests)


def test_digits_pipeline_through_the_aoti_cnn(
    served: TritonServer, heldout: tuple[np.ndarray, np.ndarray]
) -> None:
    images, truth = heldout
    with Client(served.grpc_url) as client:
        labels = client.infer("digits_aoti", {"image": images})["labels"][:, 0]
        onnx = client.infer("digits", {"image": images})["labels"][:, 0]
    assert float((labels == truth).mean()) >= 0.95
    np.testing.assert_array_equal(labels, onnx)
    # digits_aoti is fused: one model whose plan runs the compiled CNN between the stages.
    folder = served.options.repository / "digits_aoti" / "1"
    plan = json.loads((folder / "plan.json").read_text())
    assert [(s["name"], s["kind"]) for s in plan["steps"]] == [
        ("preprocess", "stage"),
        ("digits_pt2", "aoti"),
        ("postprocess", "stage"),
    ]
    assert (folder / plan["steps"][1]["file"]).is_file()
