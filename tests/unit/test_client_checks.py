import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from tritonpipe.client.checks import ModelInfo, check_inputs, chunks, join
from tritonpipe.client.errors import map_error
from tritonpipe.client.protocol import Endpoint
from tritonpipe.errors import (
    ClientError,
    InputError,
    InvalidArgument,
    ModelNotFound,
    RequestTimeout,
    Unauthorized,
    Unavailable,
)

CONFIG = {
    "max_batch_size": 4,
    "input": [
        {"name": "image", "data_type": "TYPE_STRING", "dims": ["1"]},
        {"name": "x", "data_type": "TYPE_FP32", "dims": [2, -1]},
    ],
    "output": [{"name": "y", "data_type": "TYPE_INT64", "dims": [3]}],
}
INFO = ModelInfo.from_config("m", CONFIG)


def good(batch: int = 2) -> dict[str, np.ndarray]:
    return {
        "image": np.array([[b"png"]] * batch, dtype=object),
        "x": np.zeros((batch, 2, 5), np.float32),
    }


def test_good_inputs_pass() -> None:
    arrays, batch = check_inputs(INFO, good())
    assert batch == 2 and arrays["image"].dtype == object


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"x": np.zeros((2, 2, 5), np.float64)},
            "input 'x' is FP64 \\(float64\\) but model wants FP32",
        ),
        (
            {"x": np.zeros((2, 3, 5), np.float32)},
            "input 'x' has shape \\[2, 3, 5\\]; model wants FP32\\[2,-1\\] per item",
        ),
        (
            {"x": np.zeros((2, 5), np.float32)},
            "input 'x' has shape \\[2, 5\\] but model wants \\[batch, 2, -1\\]",
        ),
        ({"image": np.zeros((2, 1), np.float32)}, "input 'image' is float32 but model wants BYTES"),
        ({"z": np.zeros(1)}, "model 'm' has no input 'z'"),
        ({"x": np.zeros((3, 2, 5), np.float32)}, "different batch sizes: \\[2, 3\\]"),
        ({"x": np.zeros((0, 2, 5), np.float32), "image": np.zeros((0, 1), object)}, "empty batch"),
    ],
)
def test_bad_inputs_name_the_tensor(change: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_inputs(INFO, good() | change)


def test_missing_input() -> None:
    with pytest.raises(InputError, match="input 'x' is missing"):
        check_inputs(INFO, {"image": good()["image"]})


def test_split_and_join() -> None:
    arrays, batch = check_inputs(INFO, good(10))
    parts = list(chunks(arrays, batch, INFO.max_batch_size))
    assert [len(p["x"]) for p in parts] == [4, 4, 2]
    joined = join([{"y": p["x"][:, 0, 0]} for p in parts])
    assert joined["y"].shape == (10,)


def test_endpoint_parsing() -> None:
    assert Endpoint.parse("grpc://localhost:9001") == Endpoint("grpc", "localhost:9001")
    assert Endpoint.parse("http://h") == Endpoint("http", "h:8000")
    assert Endpoint.parse("h:1", protocol="grpc") == Endpoint("grpc", "h:1")
    with pytest.raises(ClientError, match="scheme"):
        Endpoint.parse("ftp://h:1")


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        ("400", "bad", InvalidArgument),
        ("StatusCode.INVALID_ARGUMENT", "bad", InvalidArgument),
        ("400", "Request for unknown model: 'x' is not found", ModelNotFound),
        ("StatusCode.UNAVAILABLE", "down", Unavailable),
        ("503", "x", Unavailable),
        ("StatusCode.DEADLINE_EXCEEDED", "slow", RequestTimeout),
        ("StatusCode.UNAVAILABLE", "This API is restricted, expecting header 'k'", Unauthorized),
    ],
)
def test_error_mapping_keeps_server_message(status: str, message: str, kind: type) -> None:
    error = map_error(InferenceServerException(message, status=status), "model 'm'")
    assert type(error) is kind and str(error).startswith(f"model 'm': {message}")
    if kind is Unauthorized:  # the refusal says how to send the token
        assert "--token" in str(error) and "TRITONPIPE_TOKEN" in str(error)


def test_model_info_from_config() -> None:
    assert INFO.name == "m" and INFO.max_batch_size == 4
    assert [(s.name, s.dtype, s.shape) for s in INFO.inputs] == [
        ("image", "BYTES", (1,)),
        ("x", "FP32", (2, -1)),
    ]
    assert [(s.name, s.dtype, s.shape) for s in INFO.outputs] == [("y", "INT64", (3,))]
    assert INFO.optional == frozenset() and INFO.config == CONFIG
    bare = ModelInfo.from_config("b", {"input": [{"name": "t", "data_type": "TYPE_BOOL"}]})
    assert bare.max_batch_size == 0 and bare.inputs[0].shape == () and bare.outputs == ()


def test_unbatched_model_and_str_inputs() -> None:
    info = ModelInfo.from_config(
        "u",
        {
            "input": [
                {"name": "x", "data_type": "TYPE_INT32", "dims": [2]},
                {"name": "s", "data_type": "TYPE_STRING", "dims": [1]},
                {"name": "o", "data_type": "TYPE_INT32", "dims": [1], "optional": True},
            ]
        },
    )
    arrays, batch = check_inputs(info, {"x": np.array([1, 2], np.int32), "s": np.array(["a"])})
    assert batch == 0 and arrays["s"].dtype == object and arrays["s"].tolist() == ["a"]
    assert list(chunks(arrays, 0, 0)) == [arrays]
    with pytest.raises(InputError, match=r"input 'x' has shape \[3\]; model wants INT32\[2\]$"):
        check_inputs(info, {"x": np.zeros(3, np.int32), "s": np.array(["a"])})
    with pytest.raises(InputError, match=r"input 'x' is BYTES \(<U1\) but model wants INT32"):
        check_inputs(info, {"x": np.array(["a", "b"]), "s": np.array(["a"])})
    with pytest.raises(InputError, match=r"model 'u' has no input 'p', 'q' \(inputs: x, s, o\)"):
        check_inputs(info, {"q": 1, "p": 2})
    batched = ModelInfo.from_config("b", {"max_batch_size": 2, "input": CONFIG["input"][1:]})
    with pytest.raises(InputError, match=r"input 'x' has shape \[\] but model wants \[batch, 2"):
        check_inputs(batched, {"x": np.float32(1)})


def test_chunks_at_the_limit_and_join_of_one() -> None:
    arrays = {"x": np.arange(8)}
    assert [p["x"].tolist() for p in chunks(arrays, 8, 8)] == [list(range(8))]
    assert [p["x"].tolist() for p in chunks(arrays, 8, 3)] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    one = {"y": np.ones(2)}
    assert join([one]) is one
    two = join([{"y": np.ones(2), "z": np.zeros(1)}, {"y": np.zeros(1), "z": np.ones(1)}])
    assert two["y"].tolist() == [1, 1, 0] and two["z"].tolist() == [0, 1]


def test_survivors_of_make_mutation_in_checks() -> None:
    """Edge cases `make mutation` showed untested (see tests/mutation/REPORT.md). ModelInfo is
    built inside the test: mutmut switches mutants on per test, after import time."""
    info = ModelInfo.from_config("m", CONFIG)
    assert info.config == CONFIG and [s.name for s in info.outputs] == ["y"]
    assert (
        ModelInfo.from_config("e", {}).inputs == ()
        and ModelInfo.from_config("e", {}).optional == frozenset()
    )
    # max_batch_size 1 still batches; a scalar per row is a 1-d batch.
    one = ModelInfo.from_config(
        "one", {"max_batch_size": 1, "input": [{"name": "v", "data_type": "TYPE_UINT8"}]}
    )
    arrays, batch = check_inputs(one, {"v": np.array([7], np.uint8)})
    assert batch == 1 and arrays["v"].dtype == np.uint8
    with pytest.raises(InputError, match=r"input 'v' has shape \[\] but model wants \[batch, \]"):
        check_inputs(one, {"v": np.uint8(7)})
    # Split exactly at the limit, one row each at limit 1; unbatched (limit 0) is never split.
    arrays = {"x": np.arange(3)}
    assert next(chunks(arrays, 3, 3)) is arrays and next(chunks(arrays, 2, 3)) is arrays
    assert [p["x"].tolist() for p in chunks(arrays, 3, 1)] == [[0], [1], [2]]
    assert list(chunks(arrays, 3, 0)) == [arrays]


@pytest.mark.parametrize(
    ("url", "aio", "token_key"),
    [
        ("http://127.0.0.1:8000", False, "tritonpipe-token"),
        ("http://127.0.0.1:8000", True, "tritonpipe-token"),
        ("grpc://127.0.0.1:8001", False, "triton-grpc-protocol-tritonpipe-token"),
    ],
)
def test_extra_headers_go_with_the_request_beside_the_token(
    url: str, aio: bool, token_key: str
) -> None:
    """A traceparent (tritonpipe.tracing.calls) joins the token's header; gRPC metadata keys
    are sent lowercase (grpcio refuses others)."""
    from tritonpipe.client.base import ClientCore, ClientOptions
    from tritonpipe.server.options import TOKEN_HEADER

    core = ClientCore(url, None, ClientOptions(token="s3cret-token"), asyncio=aio)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = core.infer_kwargs({"Traceparent": traceparent})["headers"]
    assert token_key.endswith(TOKEN_HEADER) and headers[token_key] == "s3cret-token"
    key = "traceparent" if url.startswith("grpc") else "Traceparent"
    assert headers[key] == traceparent
    assert core.infer_kwargs()["headers"] == core.infer_kwargs(None)["headers"]
    assert "Traceparent" not in core.infer_kwargs()["headers"]
