"""The guard step a generated ensemble runs in front of a native-runtime model (ONNX Runtime,
LibTorch): a Python-backend model whose runtime checks the native model's inputs by the records
contract (its manifest's ``value_ranges``, no NaN/Inf), as every Python-backend model checks its
own, then passes them on unchanged. Copied into the guard's model folder like a stage file."""

from __future__ import annotations

from typing import Any

SUFFIX = "__checked"  # the guard's outputs: each input under this suffix


def passthrough(**tensors: Any) -> dict[str, Any]:
    return {f"{name}{SUFFIX}": value for name, value in tensors.items()}
