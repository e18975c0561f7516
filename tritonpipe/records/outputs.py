"""Pipeline outputs back to records: ``str`` for a text BYTES output, ``bytes`` for a binary one,
Python numbers and booleans for scalars, lists for vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tritonpipe.records.rules import OutputRule, Reasons, Refusal
from tritonpipe.tensors import Array


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, np.bytes_ | np.str_):
        return value.item() if isinstance(value, np.bytes_) else str(value).encode()
    return bytes(value)


def _text(rule: OutputRule, flat: Array, width: int, failures: dict[int, str]) -> Array:
    out = np.empty(len(flat), dtype=object)
    try:
        out[:] = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
    except UnicodeDecodeError:
        for pos, value in enumerate(flat):
            try:
                out[pos] = _as_bytes(value).decode()
            except UnicodeDecodeError:
                failures.setdefault(pos // width, Reasons.not_text(rule.name, value))
                out[pos] = None
    return out


def column_values(rule: OutputRule, array: Array, failures: dict[int, str]) -> Array:
    """One output for every row, as an array of record values: a 1-D array (numbers, or objects
    holding ``str``/``bytes``) for a scalar output, shape [n, ...] otherwise. Text that is not
    UTF-8 is a failure of its row (the value is None)."""
    n = len(array)
    flat = np.asarray(array).reshape(-1)
    width = max(len(flat) // n, 1) if n else 1
    if rule.kind == "text":
        flat = _text(rule, flat, width, failures)
    elif rule.kind == "binary":
        flat = np.asarray([_as_bytes(v) for v in flat] + [None], dtype=object)[:-1]
    return flat.reshape(n) if rule.scalar else flat.reshape(np.asarray(array).shape)


def to_records(
    rules: Sequence[OutputRule], outputs: Mapping[str, Array]
) -> tuple[list[dict[str, Any]], list[Refusal]]:
    """One record per row holding every output, and the rows whose outputs cannot be encoded."""
    failures: dict[int, str] = {}
    failed_on: dict[int, str] = {}
    columns: dict[str, list[Any]] = {}
    for rule in rules:
        before = set(failures)
        values = column_values(rule, outputs[rule.name], failures)
        for row in set(failures) - before:
            failed_on[row] = rule.name
        columns[rule.name] = values.tolist()
    n = len(next(iter(columns.values()))) if columns else 0
    names = list(columns)
    records = [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    if not names:
        records = [{} for _ in range(n)]
    refusals = [Refusal(row=r, input=failed_on[r], reason=failures[r]) for r in sorted(failures)]
    return records, refusals
