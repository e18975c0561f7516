"""Export inputs: the ``--input`` syntax, the shapes parity tries, and random samples for them.

``NAME:DTYPE:DIMS[:LOW..HIGH]``: DIMS as in :func:`tritonpipe.tensors.parse_input_spec` (``-1=N``
is a dynamic dim with sample size N); the optional range bounds integer inputs, half-open like
Python's ``range`` (``tokens:INT64:-1=24:0..1000`` draws ids 0 to 999).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonpipe.errors import ExportError, SpecError
from tritonpipe.tensors import Array, TensorSpec, dtype, parse_input_spec

DEFAULT_INT_RANGE = (0, 10)
_RANGE_RE = re.compile(r":(?P<low>-?\d+)\.\.(?P<high>-?\d+)$")


@dataclass(frozen=True, kw_only=True)
class ExportInput:
    """One model input: its spec, the sample size of each dim and, for integers, a value range."""

    spec: TensorSpec
    sample: tuple[int, ...]
    value_range: tuple[int, int] | None = None

    @property
    def is_integer(self) -> bool:
        return np.dtype(dtype(self.spec.dtype).numpy).kind in "iu"


def parse_export_input(text: str) -> ExportInput:
    """Parse one ``--input``; see the module docstring for the syntax."""
    match = _RANGE_RE.search(text.strip())
    value_range = None
    if match is not None:
        value_range = (int(match["low"]), int(match["high"]))
        text = text.strip()[: match.start()]
    spec, sample = parse_input_spec(text)
    result = ExportInput(spec=spec, sample=sample, value_range=value_range)
    if value_range is not None:
        if not result.is_integer:
            raise SpecError(f"input spec {text!r}: a value range applies to integer inputs only")
        if value_range[0] >= value_range[1]:
            raise SpecError(
                f"input spec {text!r}: range {value_range[0]}..{value_range[1]} is empty "
                "(LOW..HIGH includes LOW, excludes HIGH)"
            )
    return result


def as_export_input(item: ExportInput | tuple[TensorSpec, tuple[int, ...]]) -> ExportInput:
    """Accept the ``(spec, sample)`` pairs :func:`parse_input_spec` returns, too."""
    if isinstance(item, ExportInput):
        return item
    spec, sample = item
    return ExportInput(spec=spec, sample=sample)


def embedding_range(model: Any) -> tuple[int, int] | None:
    """``[0, n)`` for the smallest ``num_embeddings`` among the model's embeddings, if it has any.

    The smallest one is used because which embedding reads which input cannot be known without
    running the model; ids below it are valid for all of them.
    """
    from torch import nn

    sizes = [
        m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag)
    ]
    return (0, min(sizes)) if sizes else None


def with_ranges(inputs: Sequence[ExportInput], model: Any) -> tuple[ExportInput, ...]:
    """Give every integer input without a range the model's embedding range, else [0, 10)."""
    found = embedding_range(model) or DEFAULT_INT_RANGE
    return tuple(
        ExportInput(spec=i.spec, sample=i.sample, value_range=i.value_range or found)
        if i.is_integer
        else i
        for i in inputs
    )


def dim_sizes(sample: int) -> tuple[int, ...]:
    """Sizes a dynamic dim is tried at: the sample, 1, and a larger size not a multiple of it."""
    larger = sample + sample // 2 + 1
    while sample > 1 and larger % sample == 0:
        larger += 1
    return tuple(dict.fromkeys((sample, 1, larger)))


@dataclass(frozen=True, kw_only=True)
class Case:
    """One parity run: a batch size and every input's shape (batch first)."""

    shapes: Mapping[str, tuple[int, ...]]
    varied: tuple[str, int, int] | None  # (input, dim with batch as 0, size); None: all samples

    @property
    def batch(self) -> int:
        return next(iter(self.shapes.values()))[0]

    def to_dict(self) -> dict[str, list[int]]:
        return {name: list(shape) for name, shape in self.shapes.items()}


Dim = tuple[str, int]  # (input, dim with batch as 0)


def dim_groups(
    inputs: Sequence[ExportInput], equal: Sequence[tuple[Dim, Dim]] = ()
) -> list[list[Dim]]:
    """Every dynamic dim in a group of its own, except dims the model needs equal (``equal``,
    as torch.export finds them: a mask as long as its tokens), which share one group."""
    groups: list[list[Dim]] = [
        [(i.spec.name, j + 1)] for i in inputs for j, d in enumerate(i.spec.shape) if d == -1
    ]
    for a, b in equal:
        ga = next(g for g in groups if a in g)
        gb = next(g for g in groups if b in g)
        if ga is not gb:
            ga.extend(gb)
            groups.remove(gb)
    return groups


def parity_cases(
    inputs: Sequence[ExportInput], batch_sizes: Sequence[int], groups: Sequence[Sequence[Dim]]
) -> list[Case]:
    """The sample shapes at every batch size, then each group of dims at each of its sizes.

    Groups vary one at a time (the others stay at their sample size), so a failure names one dim.
    """
    sample = {i.spec.name: i.sample for i in inputs}
    cases = [
        Case(shapes={i.spec.name: (b, *i.sample) for i in inputs}, varied=None) for b in batch_sizes
    ]
    for group in groups:
        first, dim = group[0]
        for size in dim_sizes(sample[first][dim - 1])[1:]:
            for b in batch_sizes:
                shapes = {name: [b, *dims] for name, dims in sample.items()}
                for name, j in group:
                    shapes[name][j] = size
                frozen = {name: tuple(shape) for name, shape in shapes.items()}
                cases.append(Case(shapes=frozen, varied=(first, dim, size)))
    return cases


def make_arrays(
    inputs: Sequence[ExportInput], shapes: Mapping[str, tuple[int, ...]], seed: int
) -> dict[str, Array]:
    """Random arrays of the given shapes, reproducible by seed, integers within their range."""
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for item in inputs:
        shape = shapes[item.spec.name]
        np_type = np.dtype(dtype(item.spec.dtype).numpy)
        if np_type.kind == "f":
            out[item.spec.name] = rng.standard_normal(shape).astype(np_type)
        elif np_type.kind == "b":
            out[item.spec.name] = rng.random(shape) > 0.5
        elif np_type.kind in "iu":
            low, high = item.value_range or DEFAULT_INT_RANGE
            out[item.spec.name] = rng.integers(low, high, shape).astype(np_type)
        else:
            raise ExportError(
                f"input '{item.spec.name}': {item.spec.dtype} inputs cannot be exported"
            )
    return out
