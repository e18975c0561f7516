"""Online verdicts before the model runs (issue 18, issue 19 items 2-3): the ONNX and the
TorchScript builds of one spec refuse a category id outside the export manifest's range, and a
NaN, the same way over HTTP and gRPC: a 400 naming the input, the value and the range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonpipe.client import Client
from tritonpipe.errors import InvalidArgument, PipelineError
from tritonpipe.pipeline import Pipeline
from tritonpipe.server import TritonServer


def _request(kind: int, num: float = 0.5) -> dict[str, np.ndarray]:
    return {"kind": np.array([[kind]], np.int64), "num": np.array([[num, 1.0]], np.float32)}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(
    ("kind", "num", "reason"),
    [
        (-1, 0.5, "input 'kind': -1 is outside [0, 49]"),
        (50, 0.5, "input 'kind': 50 is outside [0, 49]"),
        (3, float("nan"), "input 'num': nan is not a finite number"),
    ],
)
def test_onnx_and_torchscript_builds_refuse_alike(
    protocol: str, kind: int, num: float, reason: str, contract_server: TritonServer
) -> None:
    url = contract_server.http_url if protocol == "http" else contract_server.grpc_url
    with Client(url) as client:
        for model in ("tab_onnx", "tab_torchscript"):
            with pytest.raises(InvalidArgument) as info:
                client.infer(model, _request(kind, num))
            assert reason in str(info.value), (model, str(info.value))
            assert "Traceback" not in str(info.value) and "Gather" not in str(info.value)
        good = [client.infer(m, _request(49))["score"] for m in ("tab_onnx", "tab_torchscript")]
    np.testing.assert_allclose(good[0], good[1], rtol=1e-5, atol=1e-6)


def test_in_process_refuses_alike(contract_spec: Path) -> None:
    for model in ("tab_onnx", "tab_torchscript"):
        pipeline = Pipeline.load(contract_spec, model)
        with pytest.raises(PipelineError, match=r"input 'kind': -1 is outside \[0, 49\]") as info:
            pipeline(_request(-1))
        assert info.value.invalid


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_unknown_category_is_refused_by_the_server(
    protocol: str, contract_server: TritonServer
) -> None:
    """A raw request (no client-side conversion) with a string outside the stage's
    ``categories``: 400 naming the input and the value; a declared one, non-ASCII, is scored."""
    url = contract_server.http_url if protocol == "http" else contract_server.grpc_url

    def request(kind: str) -> dict[str, np.ndarray]:
        return {
            "i0_int32": np.array([[1, 2, 3]], np.int32),
            "i1_int64": np.array([[7]], np.int64),
            "i2_bytes": np.array([[b"a", b"b", b"c"]], object),
            "kind": np.array([[kind.encode()]], object),
        }

    with Client(url) as client:
        with pytest.raises(InvalidArgument, match="input 'kind': unknown category 'fan'"):
            client.infer("sig1", request("fan"))
        out = client.infer("sig1", request("fän"))
    assert out["o_kind"].ravel()[0] == "fän".encode()
