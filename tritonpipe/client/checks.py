"""Check inputs against a model's config before sending; split and join oversized batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonpipe.errors import InputError
from tritonpipe.tensors import Array, TensorSpec, dtype, from_numpy, shapes_compatible


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What the client checks requests against, read once from the model's config."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    optional: frozenset[str]
    config: dict[str, Any]

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> ModelInfo:
        def specs(key: str) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(
                    name=t["name"],
                    dtype=dtype(t["data_type"]).triton,
                    shape=tuple(int(d) for d in t.get("dims", [])),
                )
                for t in config.get(key, [])
            )

        optional = frozenset(t["name"] for t in config.get("input", []) if t.get("optional"))
        return cls(
            name=name,
            max_batch_size=int(config.get("max_batch_size", 0)),
            inputs=specs("input"),
            outputs=specs("output"),
            optional=optional,
            config=dict(config),
        )


def as_array(name: str, spec: TensorSpec, value: Any) -> Array:
    """Turn ``value`` into the array to send; BYTES takes bytes/str arrays as object arrays."""
    array = np.asarray(value)
    if spec.dtype == "BYTES":
        if array.dtype.kind not in "OSU":
            raise InputError(f"input '{name}' is {array.dtype} but model wants BYTES")
        return array.astype(object)
    got = from_numpy(array.dtype).triton if array.dtype.kind not in "OSU" else "BYTES"
    if got != spec.dtype:
        raise InputError(f"input '{name}' is {got} ({array.dtype}) but model wants {spec.dtype}")
    return array


def check_inputs(info: ModelInfo, inputs: Mapping[str, Any]) -> tuple[dict[str, Array], int]:
    """Validate ``inputs`` against the model; return the arrays and the batch size (0 unbatched)."""
    known = {s.name: s for s in info.inputs}
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise InputError(
            f"model '{info.name}' has no input {', '.join(map(repr, unknown))} "
            f"(inputs: {', '.join(known)})"
        )
    missing = [n for n in known if n not in inputs and n not in info.optional]
    if missing:
        raise InputError(f"model '{info.name}' input '{missing[0]}' is missing")
    arrays: dict[str, Array] = {}
    batches: set[int] = set()
    for name, value in inputs.items():
        spec = known[name]
        array = as_array(name, spec, value)
        shape = array.shape
        if info.max_batch_size > 0:
            if array.ndim == 0 or len(shape) != len(spec.shape) + 1:
                raise InputError(
                    f"input '{name}' has shape {list(shape)} but model wants "
                    f"[batch, {', '.join(map(str, spec.shape))}]"
                )
            if shape[0] == 0:
                raise InputError(f"input '{name}' is an empty batch")
            batches.add(shape[0])
            shape = shape[1:]
        if not shapes_compatible(tuple(shape), spec.shape):
            raise InputError(
                f"input '{name}' has shape {list(array.shape)}; model wants "
                f"{spec.describe()}" + (" per item" if info.max_batch_size else "")
            )
        arrays[name] = array
    if len(batches) > 1:
        raise InputError(f"inputs have different batch sizes: {sorted(batches)}")
    return arrays, batches.pop() if batches else 0


def chunks(arrays: dict[str, Array], batch: int, limit: int) -> Iterator[dict[str, Array]]:
    """Slices of at most ``limit`` rows (all of it when the model does not batch)."""
    if limit <= 0 or batch <= limit:
        yield arrays
        return
    for start in range(0, batch, limit):
        yield {n: a[start : start + limit] for n, a in arrays.items()}


def join(parts: list[dict[str, Array]]) -> dict[str, Array]:
    if len(parts) == 1:
        return parts[0]
    return {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}
