"""DataFrame columns to pipeline input arrays, finding the rows that cannot be converted.

A scalar column feeds an input of shape [1]; a column of lists or arrays feeds a vector input.
A row is bad when a needed value is null, will not convert to the input's dtype, or has the
wrong length; each bad row is reported with the column and input it failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonpipe.batch.config import JobConfig
from tritonpipe.errors import BatchError
from tritonpipe.tensors import Array, TensorSpec, dtype


@dataclass(frozen=True, kw_only=True)
class BadRow:
    position: int  # in the unit's frame
    column: str
    reason: str


def _describe(spec: TensorSpec) -> str:
    return f"{spec.dtype}{list(spec.shape)}"


def _scalar(values: Any, spec: TensorSpec, column: str, bad: list[BadRow]) -> Array:
    target = dtype(spec.dtype).numpy
    series = values
    nulls = series.isna().to_numpy()
    for pos in np.flatnonzero(nulls):
        bad.append(
            BadRow(position=int(pos), column=column, reason=f"null, input wants {_describe(spec)}")
        )
    out = np.zeros(len(series), dtype=target)
    ok = ~nulls
    try:
        out[ok] = series[ok].to_numpy().astype(target)
    except (TypeError, ValueError):
        for pos in np.flatnonzero(ok):
            try:
                out[pos] = np.asarray(series.iloc[pos]).astype(target)
            except (TypeError, ValueError):
                value = repr(series.iloc[pos])[:40]
                reason = f"value {value} is not {spec.dtype} (input wants {_describe(spec)})"
                bad.append(BadRow(position=int(pos), column=column, reason=reason))
    return out.reshape(-1, 1)


def _vector(values: Any, spec: TensorSpec, column: str, bad: list[BadRow]) -> Array:
    target = dtype(spec.dtype).numpy
    width = spec.shape[0]
    rows: list[Any] = []
    for pos, value in enumerate(values):
        try:
            if value is None:
                raise ValueError(f"null, input wants {_describe(spec)}")
            if isinstance(value, str):  # a CSV cell: "1,2,3" or "[1, 2, 3]"
                value = [v for v in value.strip("[] ").replace(",", " ").split()]
            array = np.asarray(value).astype(target).reshape(-1)
            if width != -1 and array.shape[0] != width:
                raise ValueError(f"{array.shape[0]} values, input wants {_describe(spec)}")
            rows.append(array)
        except (TypeError, ValueError) as exc:
            reason = (
                str(exc) if "input wants" in str(exc) else f"{exc} (input wants {_describe(spec)})"
            )
            bad.append(BadRow(position=pos, column=column, reason=reason))
            rows.append(np.zeros(max(width, 1), dtype=target))
    if width == -1 and len({r.shape[0] for r in rows}) > 1:
        raise BatchError(f"column '{column}': ragged rows for input {spec.name} need equal lengths")
    return np.stack(rows) if rows else np.zeros((0, max(width, 1)), dtype=target)


def to_inputs(
    frame: Any,
    specs: Sequence[TensorSpec],
    config: JobConfig,
    file: str,
    given: dict[str, Array] | None = None,
) -> tuple[dict[str, Array], list[BadRow]]:
    """Input arrays for every row (bad rows hold zeros) and the rows that were bad; inputs in
    ``given`` (a transform's outputs) are taken as they are, cast to the input's dtype."""
    bad: list[BadRow] = []
    arrays: dict[str, Array] = {}
    for spec in specs:
        if given and spec.name in given:
            array = given[spec.name].reshape(len(frame), -1)
            if spec.shape[-1] != -1 and array.shape[1] != spec.shape[-1]:
                raise BatchError(
                    f"transform output '{spec.name}' has {array.shape[1]} values per row, "
                    f"pipeline input wants {_describe(spec)}"
                )
            arrays[spec.name] = array.astype(dtype(spec.dtype).numpy)
            continue
        column = config.column_for(spec.name)
        if column not in frame.columns:
            have = ", ".join(str(c) for c in frame.columns if c != "_row")
            raise BatchError(
                f"{file}: no column '{column}' for pipeline input {spec.name} "
                f"({_describe(spec)}); columns: {have}"
            )
        if len(spec.shape) != 1:
            raise BatchError(f"input {spec.name} {_describe(spec)}: batch jobs take 1-D inputs")
        if spec.shape == (1,):
            arrays[spec.name] = _scalar(frame[column], spec, column, bad)
        else:
            arrays[spec.name] = _vector(frame[column], spec, column, bad)
    for name in config.key:
        if name not in frame.columns:
            raise BatchError(f"{file}: no key column '{name}'")
    return arrays, bad
