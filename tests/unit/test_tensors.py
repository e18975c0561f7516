import numpy as np
import pytest

from tritonpipe.errors import SpecError
from tritonpipe.tensors import (
    TensorSpec,
    dtype,
    from_numpy,
    from_torch,
    parse_input_spec,
    shapes_compatible,
)


def test_dtype_table_round_trips_numpy() -> None:
    for name in ("BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64"):
        assert from_numpy(np.dtype(dtype(name).numpy)).triton == name
    assert from_numpy(np.array([b"x"]).dtype).triton == "BYTES"
    assert dtype("TYPE_STRING").triton == "BYTES"
    assert dtype("bytes").config == "TYPE_STRING"
    assert dtype("fp32").onnx == 1


def test_unknown_dtype_is_named() -> None:
    with pytest.raises(SpecError, match="unknown dtype 'FLOAT9'; expected one of BOOL, UINT8, "):
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


def test_spec_dict_round_trip_rename_and_describe() -> None:
    spec = TensorSpec(name="x", dtype="FP32", shape=(-1, 8))
    assert spec.to_dict() == {"name": "x", "dtype": "FP32", "shape": [-1, 8]}
    assert TensorSpec.from_dict({"name": "x", "dtype": "TYPE_FP32", "shape": [-1, 8]}) == spec
    assert TensorSpec.from_dict({"name": "s", "dtype": "TYPE_STRING", "shape": [1]}).dtype == (
        "BYTES"
    )
    renamed = spec.renamed("y")
    assert renamed == TensorSpec(name="y", dtype="FP32", shape=(-1, 8)) and spec.name == "x"
    assert spec.describe() == "FP32[-1,8]"
    assert TensorSpec(name="s", dtype="BYTES", shape=()).describe() == "BYTES[]"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "", "dtype": "FP32", "shape": (1,)}, "^a tensor needs a name$"),
        ({"name": "x", "dtype": "FP33", "shape": (1,)}, "unknown dtype 'FP33'"),
        ({"name": "x", "dtype": "FP32", "shape": (0,)}, r"tensor 'x' shape \[0\]: dims are >0"),
        ({"name": "x", "dtype": "FP32", "shape": (4, -2)}, r"shape \[4, -2\]"),
    ],
)
def test_bad_specs_are_named(fields: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        TensorSpec(**fields)


def test_torch_and_numpy_rows() -> None:
    import torch

    assert from_torch(torch.float32).triton == "FP32"
    assert from_torch(torch.bfloat16).triton == "BF16" and dtype("BF16").numpy == "float32"
    assert from_torch(torch.int64).onnx == 7
    with pytest.raises(SpecError, match="torch dtype complex64 has no Triton equivalent"):
        from_torch(torch.complex64)
    with pytest.raises(SpecError, match="numpy dtype complex64 has no Triton equivalent"):
        from_numpy(np.complex64)
    assert from_numpy(np.float32).triton == "FP32"  # never BF16, which shares float32
    assert from_numpy(np.array(["a"]).dtype).triton == "BYTES"
    assert dtype(" fp16 ").triton == "FP16" and dtype("TYPE_BOOL").config == "TYPE_BOOL"
    assert shapes_compatible((), ()) and shapes_compatible((-1,), (5,))
    assert not shapes_compatible((4, 5), (4, 6))
