"""Tensor specs and the one table that converts dtypes between Triton, numpy, torch and ONNX."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonpipe.errors import SpecError

Array = NDArray[Any]


@dataclass(frozen=True, kw_only=True)
class DType:
    """One row of the conversion table. ``triton`` is the name Triton's protocols use."""

    triton: str
    numpy: str
    torch: str | None
    onnx: int  # onnx.TensorProto.DataType value

    @property
    def config(self) -> str:
        """The name used in config.pbtxt (``TYPE_FP32``); BYTES is ``TYPE_STRING`` there."""
        return "TYPE_STRING" if self.triton == "BYTES" else f"TYPE_{self.triton}"


_TABLE = (
    DType(triton="BOOL", numpy="bool", torch="bool", onnx=9),
    DType(triton="UINT8", numpy="uint8", torch="uint8", onnx=2),
    DType(triton="UINT16", numpy="uint16", torch="uint16", onnx=4),
    DType(triton="UINT32", numpy="uint32", torch="uint32", onnx=12),
    DType(triton="UINT64", numpy="uint64", torch="uint64", onnx=13),
    DType(triton="INT8", numpy="int8", torch="int8", onnx=3),
    DType(triton="INT16", numpy="int16", torch="int16", onnx=5),
    DType(triton="INT32", numpy="int32", torch="int32", onnx=6),
    DType(triton="INT64", numpy="int64", torch="int64", onnx=7),
    DType(triton="FP16", numpy="float16", torch="float16", onnx=10),
    DType(triton="FP32", numpy="float32", torch="float32", onnx=1),
    DType(triton="FP64", numpy="float64", torch="float64", onnx=11),
    DType(triton="BF16", numpy="float32", torch="bfloat16", onnx=16),
    DType(triton="BYTES", numpy="object", torch=None, onnx=8),
)
_BY_TRITON = {d.triton: d for d in _TABLE}
_BY_CONFIG = {d.config: d for d in _TABLE}
_BY_NUMPY = {d.numpy: d for d in _TABLE if d.triton != "BF16"}
_BY_TORCH = {d.torch: d for d in _TABLE if d.torch}
DTYPES = tuple(_BY_TRITON)


def dtype(name: str) -> DType:
    """Look a dtype up by its Triton name (``FP32``) or config name (``TYPE_FP32``)."""
    key = name.strip().upper()
    found = _BY_TRITON.get(key) or _BY_CONFIG.get(key)
    if found is None:
        raise SpecError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return found


def from_numpy(array_dtype: Any) -> DType:
    """The row for a numpy dtype; byte and str arrays map to BYTES."""
    np_dtype = np.dtype(array_dtype)
    if np_dtype.kind in "OSU":
        return _BY_TRITON["BYTES"]
    found = _BY_NUMPY.get(np_dtype.name)
    if found is None:
        raise SpecError(f"numpy dtype {np_dtype.name} has no Triton equivalent")
    return found


def from_torch(torch_dtype: Any) -> DType:
    """The row for a torch dtype (``torch.float32``)."""
    name = str(torch_dtype).removeprefix("torch.")
    found = _BY_TORCH.get(name)
    if found is None:
        raise SpecError(f"torch dtype {name} has no Triton equivalent")
    return found


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """A named tensor without its batch dimension; -1 marks a dynamic dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        dtype(self.dtype)  # validates
        if not self.name:
            raise SpecError("a tensor needs a name")
        if any(d < -1 or d == 0 for d in self.shape):
            raise SpecError(f"tensor '{self.name}' shape {list(self.shape)}: dims are >0 or -1")

    def describe(self) -> str:
        """``FP32[1,8,8]``, the form used in error messages."""
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    def renamed(self, name: str) -> TensorSpec:
        """The same dtype and shape under another name."""
        return TensorSpec(name=name, dtype=self.dtype, shape=self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(name=data["name"], dtype=dtype(data["dtype"]).triton, shape=tuple(data["shape"]))


def shapes_compatible(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same rank and every pair of dims equal, or one of them dynamic (-1)."""
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


_INPUT_RE = re.compile(r"^(?P<name>[^:]+):(?P<dtype>[A-Za-z0-9_]+):(?P<dims>[^:]*)$")


def parse_input_spec(text: str) -> tuple[TensorSpec, tuple[int, ...]]:
    """Parse ``name:DTYPE:d1,d2`` from the command line.

    A dynamic dimension is ``-1=N``, N being the size used for sample inputs (``-1`` alone means
    16). Returns the spec and the sample shape.
    """
    match = _INPUT_RE.match(text.strip())
    if match is None:
        raise SpecError(f"input spec {text!r}: expected NAME:DTYPE:DIMS, e.g. x:FP32:1,8,8")
    shape: list[int] = []
    sample: list[int] = []
    for part in filter(None, match["dims"].split(",")):
        dim, _, size = part.partition("=")
        try:
            value = int(dim)
            sample_size = int(size) if size else (16 if value == -1 else value)
        except ValueError:
            raise SpecError(f"input spec {text!r}: dimension {part!r} is not a number") from None
        if size and value != -1:
            raise SpecError(f"input spec {text!r}: only a dynamic dim (-1) takes a sample size")
        shape.append(value)
        sample.append(sample_size)
    spec = TensorSpec(name=match["name"], dtype=dtype(match["dtype"]).triton, shape=tuple(shape))
    return spec, tuple(sample)
