"""Warmup against a real server: the digits pipeline's first request after load is within 2x of
the median of the requests after it, for both fused pipelines (the spec's sample PNG warms them)
and the unfused one (each of its step models warmed with what the steps before it compute).

Each request's time is the server's own (the model's ``success`` time in its statistics, before
and after the request, once Triton has counted it), so the client's first-call costs (its connection, its first encode) and
the machine's other load between requests do not blur what warmup is for."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import tritonclient.http as triton_http

from tests.conftest import DIGITS
from tests.integration.counted import server_ms
from tritonpipe.ensembles import build_repository
from tritonpipe.repository.config import parse_pbtxt
from tritonpipe.server import ServerOptions, TritonServer


def _ms(client: triton_http.InferenceServerClient, model: str, image: np.ndarray) -> float:
    tensor = triton_http.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(image)
    return server_ms(client, model, lambda: client.infer(model, [tensor]))


def test_first_request_after_load_is_within_2x_of_the_median(
    trained_export: Path, tmp_path: Path
) -> None:
    build_repository(DIGITS / "pipeline.yaml", tmp_path / "repo")
    for model in ("digits", "preprocess", "digits_onnx", "postprocess"):
        config = parse_pbtxt((tmp_path / "repo" / model / "config.pbtxt").read_text())
        assert "sample" in [w.name for w in config.model_warmup], model
    image = np.array([[(DIGITS / "samples" / "three.png").read_bytes()]], dtype=object)
    options = ServerOptions(repository=tmp_path / "repo", exit_timeout_s=5)
    with TritonServer(options, log_path=tmp_path / "server.log", ready_timeout_s=120) as server:
        client = triton_http.InferenceServerClient(server.http_url.split("://")[1])
        try:
            for model in ("digits_steps", "digits", "digits_ts"):
                first = _ms(client, model, image)
                median = statistics.median(_ms(client, model, image) for _ in range(20))
                assert first <= 2 * median, f"{model}: first {first:.2f} ms, median {median:.2f}"
        finally:
            client.close()
