"""Fused and unfused builds of one pipeline, served and in-process, answer alike."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ASSETS, DIGITS
from tritonpipe.client import Client
from tritonpipe.errors import ClientError, InvalidArgument, PipelineError
from tritonpipe.pipeline import Pipeline
from tritonpipe.server import TritonServer


def _tabular_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "features": rng.normal(size=(5, 4)) * 20,
        "history": rng.normal(size=(5, 7)).astype(np.float32) * 4,
    }


def _assert_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_digits_in_process_fused_and_unfused_are_bit_equal(
    url: str, heldout: tuple[np.ndarray, np.ndarray]
) -> None:
    images, truth = heldout
    local = Pipeline.load(DIGITS / "pipeline.yaml", "digits", threads=1)({"image": images})
    assert (local["labels"][:, 0] == truth).mean() >= 0.95
    with Client(url) as client:
        fused = client.infer("digits", {"image": images})
        unfused = client.infer("digits_steps", {"image": images})
        torchscript = client.infer("digits_ts", {"image": images})
    _assert_equal(local, fused)  # same runtime (onnxruntime, one thread): bit-equal
    _assert_equal(fused, unfused)
    np.testing.assert_array_equal(torchscript["labels"], fused["labels"])
    np.testing.assert_allclose(torchscript["probabilities"], fused["probabilities"], atol=1e-5)


def test_multi_input_multi_output_pipeline_is_equal_everywhere(
    url: str, tabular_spec: Path, repository: Path
) -> None:
    inputs = _tabular_inputs()
    local = Pipeline.load(tabular_spec, "tabular", threads=1)(inputs)
    assert sorted(local) == ["rank", "scaled", "score"]
    from_repo = Pipeline.load(repository, "tabular_steps", threads=1)(inputs)
    with Client(url) as client:
        fused = client.infer("tabular", inputs)
        unfused = client.infer("tabular_steps", inputs)
        torchscript = client.infer("tabular_ts", inputs)
    for other in (fused, unfused, from_repo):
        _assert_equal(local, other)
    for name in local:
        np.testing.assert_allclose(torchscript[name], local[name], rtol=1e-5, atol=1e-6)
    # The spec's maps really route tensors: 'pooled' became 'total' and feeds the score.
    expected = np.tanh(
        local["scaled"].sum(axis=1, keepdims=True)
        + np.clip(inputs["history"], -5, 5).sum(axis=1, keepdims=True)
    )
    np.testing.assert_allclose(local["score"], expected, rtol=1e-5)


STEPS = ("preprocess", "digits_onnx", "postprocess")


def test_fused_model_batches_and_reports_each_step(
    server: TritonServer, heldout: tuple[np.ndarray, np.ndarray]
) -> None:
    images = heldout[0]
    with Client(server.grpc_url) as client:
        for start in range(0, 64, 8):
            client.infer("digits", {"image": images[start : start + 8]})
    # Counts are pushed every second by a thread in the model, without a further request.
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
        if all(_counted(text, step, i, 8) for i, step in enumerate(STEPS)):
            return
        time.sleep(0.25)
    raise AssertionError(f"no step counts for digits on the metrics endpoint:\n{text[:2000]}")


def _counted(text: str, step: str, position: int, requests: int) -> bool:
    labels = f'model="digits",position="{position}",step="{step}"'
    served = re.search(rf"tritonpipe_step_requests_total{{{labels}}} (\S+)", text)
    spent = re.search(rf"tritonpipe_step_duration_us_total{{{labels}}} (\S+)", text)
    return bool(served and float(served[1]) >= requests and spent and float(spent[1]) > 0)


def test_stage_bug_names_file_and_line(server: TritonServer) -> None:
    with Client(server.http_url) as client, pytest.raises(ClientError) as info:
        client.infer("buggy", {"x": np.ones((2, 4), np.float32)})
    message = str(info.value)
    assert not isinstance(info.value, InvalidArgument)
    assert "stage 'buggy' failed: ZeroDivisionError: integer division or modulo by zero" in message
    line = next(
        i
        for i, text in enumerate(
            (Path(__file__).parents[1] / "assets" / "test_stages.py").read_text().splitlines(), 1
        )
        if "1 // scale" in text
    )
    assert f"(at test_stages.py:{line} in buggy)" in message
    log = server.log_path.read_text()
    assert "Traceback (most recent call last)" in log and "1 // scale" in log


def test_stage_output_dtype_only_converts_without_loss(server: TritonServer) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with Client(server.http_url) as client:
        np.testing.assert_allclose(client.infer("lossy_float", {"x": x})["y"], x + 0.5)
        with pytest.raises(ClientError) as info:
            client.infer("lossy_int", {"x": x})
    assert (
        "stage 'lossy_int' output 'y' is declared INT64 but is float64; converting would lose data"
        in str(info.value)
    )


def test_in_process_errors_name_the_step_and_fail_alone() -> None:
    pipe = Pipeline.load(ASSETS / "test_pipeline.yaml", "strict")
    with pytest.raises(
        PipelineError, match="stage 'strict' rejected the request: input 'x' holds negative values"
    ) as info:
        pipe({"x": -np.ones((2, 4), np.float32)})
    assert info.value.invalid
    requests = [{"x": np.full((1, 4), v, np.float32)} for v in (1.0, -1.0, 2.0)]
    requests.append({"x": np.ones((1, 3), np.float32)})  # wrong shape, caught before running
    results = pipe.run_requests(requests)
    np.testing.assert_array_equal(results[0]["y"], requests[0]["x"] * 2)  # type: ignore[index]
    np.testing.assert_array_equal(results[2]["y"], requests[2]["x"] * 2)  # type: ignore[index]
    assert isinstance(results[1], PipelineError) and "negative" in str(results[1])
    assert isinstance(results[3], PipelineError) and "input 'x' has shape [1, 3]" in str(results[3])
    times = pipe.step_times()["strict"]
    assert times.requests >= 3 and times.seconds > 0
