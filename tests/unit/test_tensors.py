import numpy as np
import pytest

from tritonpipe.errors import SpecError
from tritonpipe.tensors import TensorSpec, dtype, from_numpy, parse_input_spec, shapes_compatible


def test_dtype_table_round_trips_numpy() -> None:
    for name in ("BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64"):
        assert from_numpy(np.dtype(dtype(name).numpy)).triton == name
    assert from_numpy(np.array([b"x"]).dtype).triton == "BYTES"
    assert dtype("TYPE_STRING").triton == "BYTES"
    assert dtype("bytes").config == "TYPE_STRING"
    assert dtype("fp32").onnx == 1


def test_unknown_dtype_is_named() -> None:
    with pytest.raises(SpecError, match="unknown dtype 'FLOAT9'"):
        dtype("FLOAT9")


def test_parse_input_spec_with_dynamic_dims() -> None:
    spec, sample = parse_input_spec("tokens:INT64:-1=32,8")
    assert spec == TensorSpec(name="tokens", dtype="INT64", shape=(-1, 8))
    assert sample == (32, 8)
    assert parse_input_spec("x:FP32:-1")[1] == (16,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x:FP32", "expected NAME:DTYPE:DIMS"),
        ("x:FP99:1", "unknown dtype"),
        ("x:FP32:a", "not a number"),
        ("x:FP32:4=2", "only a dynamic dim"),
        ("x:FP32:0", "dims are"),
    ],
)
def test_parse_input_spec_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_input_spec(text)


def test_shapes_compatible() -> None:
    assert shapes_compatible((1, 8, 8), (1, -1, 8))
    assert not shapes_compatible((3, 8, 8), (1, 8, 8))
    assert not shapes_compatible((8,), (8, 1))
