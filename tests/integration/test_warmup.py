"""Warmup against a real server: the digits pipeline's first request after load is within 2x of
the median of the requests after it, for both fused pipelines (the spec's sample PNG warms them)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from tests.conftest import DIGITS
from tritonpipe.client import Client
from tritonpipe.ensembles import build_repository
from tritonpipe.repository.config import parse_pbtxt
from tritonpipe.server import ServerOptions, TritonServer


def _ms(client: Client, model: str, image: np.ndarray) -> float:
    start = time.perf_counter()
    client.infer(model, {"image": image})
    return (time.perf_counter() - start) * 1000


def test_first_request_after_load_is_within_2x_of_the_median(
    trained_export: Path, tmp_path: Path
) -> None:
    build_repository(DIGITS / "pipeline.yaml", tmp_path / "repo")
    config = parse_pbtxt((tmp_path / "repo" / "digits" / "config.pbtxt").read_text())
    assert [w.name for w in config.model_warmup] == ["sample"]
    image = np.array([[(DIGITS / "samples" / "three.png").read_bytes()]], dtype=object)
    options = ServerOptions(repository=tmp_path / "repo", exit_timeout_s=5)
    with (
        TritonServer(options, log_path=tmp_path / "server.log", ready_timeout_s=120) as server,
        Client(server.http_url) as client,
    ):
        for model in ("digits", "digits_ts"):
            client.model(model)  # the client's one-time metadata fetch is not the server's time
            first = _ms(client, model, image)
            median = statistics.median(_ms(client, model, image) for _ in range(20))
            assert first <= 2 * median, f"{model}: first {first:.1f} ms, median {median:.1f} ms"
