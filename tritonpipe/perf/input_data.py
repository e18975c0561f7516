"""Request data for profiling: zeros, random values, or perf_analyzer's JSON input format.

JSON: ``{"data": [{"INPUT": [...]}, {"INPUT": {"content": [...], "shape": [...]}},
{"INPUT": {"b64": "...", "shape": [...]}}]}``, one entry per request, without the batch
dimension. ``b64`` holds the raw little-endian tensor; for BYTES that is Triton's serialized
form (each element a 4-byte length then its bytes), as perf_analyzer reads it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from tritonpipe.client.checks import ModelInfo
from tritonpipe.errors import PerfError
from tritonpipe.records.contract import Contract
from tritonpipe.records.plan import published_options
from tritonpipe.records.rules import InputRule
from tritonpipe.tensors import Array, TensorSpec, dtype

Sample = dict[str, Array]  # one request's tensors, without the batch dimension


def parse_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``--shape NAME:D1,D2`` options."""
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise PerfError(f"--shape {item!r}: expected NAME:D1,D2,...") from None
        if not sep or not name or any(d < 1 for d in shapes[name]):
            raise PerfError(f"--shape {item!r}: expected NAME:D1,D2,... with positive dims")
    return shapes


def _shape(spec: TensorSpec, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    shape = shapes.get(spec.name, spec.shape)
    if len(shape) != len(spec.shape) or any(
        -1 != d != s for d, s in zip(spec.shape, shape, strict=True)
    ):
        raise PerfError(
            f"--shape {spec.name}:{','.join(map(str, shape))} does not fit the model's "
            f"{spec.describe()}"
        )
    if -1 in shape:
        raise PerfError(
            f"input '{spec.name}' has dynamic shape {list(spec.shape)}; give "
            f"--shape {spec.name}:DIMS"
        )
    return shape


# Integer inputs without a range in the contract: perf_analyzer's default.
DEFAULT_INT_RANGE = (0, 100)


def input_rules(info: ModelInfo) -> dict[str, InputRule]:
    """The model's input rules by name, from the contract its config publishes
    (``tritonpipe.contract``: a spec's ``range``/``categories``, a scoring model's manifest
    ``value_ranges``); rules without options for a model that publishes none."""
    options = published_options(info.config) or {}
    try:
        contract = Contract.from_specs(info.inputs, (), **options)
    except (TypeError, ValueError, IndexError):
        contract = Contract.from_specs(info.inputs, ())  # a hand-written parameter: no options
    return {rule.name: rule for rule in contract.inputs}


def _integers(rule: InputRule | None) -> tuple[int, int]:
    """``[low, high)`` to draw an integer input from: the contract's range (inclusive), else
    perf_analyzer's ``[0, 100)``, narrowed to the range when only one end is given."""
    if rule is None or (rule.low is None and rule.high is None):
        return DEFAULT_INT_RANGE
    low = math.ceil(rule.low) if rule.low is not None else DEFAULT_INT_RANGE[0]
    high = math.floor(rule.high) + 1 if rule.high is not None else low + DEFAULT_INT_RANGE[1]
    return low, max(high, low + 1)


def synthetic(
    info: ModelInfo, kind: str, shapes: Mapping[str, tuple[int, ...]], seed: int = 0
) -> list[Sample]:
    """One sample of zeros or random values per input (perf_analyzer's zero/random), within
    the model's contract: random integers from its range, else ``[0, 100)``; floats from its
    range, else ``[0, 1)``; strings from its categories, else random hex."""
    rng = np.random.default_rng(seed)
    rules = input_rules(info)
    sample: Sample = {}
    for spec in info.inputs:
        shape = _shape(spec, shapes)
        rule = rules.get(spec.name)
        if spec.dtype == "BYTES":
            size = int(np.prod(shape))
            if kind == "zero":
                words = [b"0"] * size
            elif rule is not None and rule.categories:
                picks = rng.integers(0, len(rule.categories), size)
                words = [rule.categories[int(i)].encode() for i in picks]
            else:
                words = [rng.bytes(8).hex().encode() for _ in range(size)]
            sample[spec.name] = np.array(words, dtype=object).reshape(shape)
            continue
        np_type = np.dtype(dtype(spec.dtype).numpy)
        if kind == "zero":
            sample[spec.name] = np.zeros(shape, np_type)
        elif np_type.kind == "f":
            low = rule.low if rule is not None and rule.low is not None else 0.0
            high = rule.high if rule is not None and rule.high is not None else low + 1.0
            sample[spec.name] = (low + rng.random(shape) * (high - low)).astype(np_type)
        else:
            low, high = _integers(rule)
            sample[spec.name] = rng.integers(low, high, shape).astype(np_type)
    return [sample]


def _value(spec: TensorSpec, raw: Any, where: str, shapes: Mapping[str, tuple[int, ...]]) -> Array:
    content, shape = raw, None
    if isinstance(raw, dict):
        unknown = set(raw) - {"content", "shape", "b64"}
        if unknown:
            raise PerfError(f"{where}: unknown keys {sorted(unknown)} (use content, b64, shape)")
        shape = raw.get("shape")
        if "b64" in raw:
            try:
                blob = base64.b64decode(raw["b64"], validate=True)
            except (binascii.Error, TypeError) as exc:
                raise PerfError(f"{where}.b64: not base64 ({exc})") from None
            if spec.dtype == "BYTES":
                try:
                    content = deserialize_bytes_tensor(blob)
                except Exception as exc:  # noqa: BLE001 - any decoding failure is the file's
                    raise PerfError(f"{where}.b64: not a serialized BYTES tensor ({exc})") from None
            else:
                content = np.frombuffer(
                    blob, dtype=np.dtype(dtype(spec.dtype).numpy).newbyteorder("<")
                )
        elif "content" in raw:
            content = raw["content"]
        else:
            raise PerfError(f"{where}: needs 'content' or 'b64'")
    target = tuple(shape) if shape is not None else _shape(spec, shapes)
    try:
        if spec.dtype == "BYTES":
            flat = [
                v.encode() if isinstance(v, str) else bytes(v)
                for v in np.asarray(content, dtype=object).reshape(-1)
            ]
            array = np.array(flat, dtype=object)
        else:
            array = np.asarray(content, dtype=dtype(spec.dtype).numpy).reshape(-1)
        return array.reshape(target)
    except (ValueError, TypeError) as exc:
        raise PerfError(
            f"{where}: cannot make {spec.dtype}{list(target)} from it ({exc})"
        ) from None


def from_json(path: Path, info: ModelInfo, shapes: Mapping[str, tuple[int, ...]]) -> list[Sample]:
    """Read perf_analyzer's JSON input format; errors name the file and the entry."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise PerfError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise PerfError(f"{path}: not JSON ({exc})") from None
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise PerfError(f'{path}: expected {{"data": [ {{input: value, ...}}, ... ]}}')
    specs = {s.name: s for s in info.inputs}
    samples = []
    for i, entry in enumerate(entries):
        where = f"{path}: data[{i}]"
        if isinstance(entry, list):
            raise PerfError(f"{where}: sequence streams (lists of steps) are not supported")
        if not isinstance(entry, dict):
            raise PerfError(f"{where}: expected an object of input name -> value")
        unknown = sorted(set(entry) - set(specs))
        if unknown:
            raise PerfError(f"{where}: model '{info.name}' has no input {unknown[0]!r}")
        missing = [n for n in specs if n not in entry and n not in info.optional]
        if missing:
            raise PerfError(f"{where}: input '{missing[0]}' is missing")
        samples.append({n: _value(specs[n], v, f"{where}.{n}", shapes) for n, v in entry.items()})
    return samples


def load(spec: str, info: ModelInfo, shapes: Mapping[str, tuple[int, ...]]) -> list[Sample]:
    """``zero``, ``random`` or a JSON file path."""
    if spec in ("zero", "random"):
        return synthetic(info, spec, shapes)
    return from_json(Path(spec), info, shapes)


def batch(sample: Sample, size: int, batched: bool) -> dict[str, Array]:
    """The request for one sample: ``size`` copies stacked, as perf_analyzer's -b does."""
    if not batched:
        return sample
    return {n: np.repeat(v[np.newaxis], size, axis=0) for n, v in sample.items()}


def to_json(samples: Sequence[Mapping[str, Array]]) -> dict[str, Any]:
    """The JSON document for ``samples`` (BYTES as b64 of the serialized tensor)."""
    entries = []
    for sample in samples:
        entry: dict[str, Any] = {}
        for name, value in sample.items():
            if value.dtype == object:
                blob = serialize_byte_tensor(value).item()
                entry[name] = {"b64": base64.b64encode(blob).decode(), "shape": list(value.shape)}
            else:
                entry[name] = {"content": value.reshape(-1).tolist(), "shape": list(value.shape)}
        entries.append(entry)
    return {"data": entries}
