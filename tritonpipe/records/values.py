"""One input's values (a column, or one key across records) to its tensor, with a reason for each
value that cannot be converted without loss.

Numbers convert to the input's dtype when nothing is lost beyond its precision: float64 to FP32 is
fine, 1.5 to INT64 or 300 to INT8 is not, and neither is a string where a number is wanted, a
number where a string is wanted, or a boolean where a number is wanted. The common case (all
values numbers, or all strings) is converted with numpy in one go; values are looked at one by
one only for a column that holds something else (nulls, other types, lists of other lengths).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tritonpipe.records.rules import NUMBER_KINDS, InputRule, Reasons
from tritonpipe.tensors import Array

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
Bad = dict[int, str]  # row -> reason


def _is_number_type(kind: type) -> bool:
    return kind is not bool and issubclass(kind, int | float | np.integer | np.floating)


def _is_bool_type(kind: type) -> bool:
    return kind is bool or issubclass(kind, np.bool_)


class _Verdicts:
    """Masks of refused values, each with the reason function for its values."""

    def __init__(self, n: int) -> None:
        self.wrong = np.zeros(n, dtype=bool)
        self.reasons: list[tuple[Array, Any]] = []

    def refuse(self, mask: Array, why: Any) -> None:
        mask = mask & ~self.wrong
        if mask.any():
            self.reasons.append((mask, why))
            self.wrong[mask] = True


def _to_bool(rule: InputRule, source: Array, v: _Verdicts) -> Array:
    if source.dtype.kind == "b":
        return source.astype(bool)
    as_float = source.astype(np.float64)
    if source.dtype.kind == "f":
        v.refuse(~np.isfinite(as_float), lambda x: Reasons.not_finite(rule.name, x))
    v.refuse((as_float != 0) & (as_float != 1), lambda x: Reasons.wrong_type(rule.name, x, "BOOL"))
    return np.where(v.wrong, 0, as_float).astype(bool)


def _to_float(rule: InputRule, source: Array, v: _Verdicts) -> Array:
    if source.dtype.kind == "f" and not rule.allow_nan:
        v.refuse(~np.isfinite(source), lambda x: Reasons.not_finite(rule.name, x))
    with np.errstate(over="ignore", invalid="ignore"):
        out = source.astype(rule.numpy)
    lost = ~np.isfinite(out)
    if source.dtype.kind == "f":
        lost &= np.isfinite(source)
    low, high = _limits(rule)
    v.refuse(lost, lambda x: Reasons.outside_dtype(rule.name, x, rule.spec.dtype, low, high))
    return out


def _to_int(rule: InputRule, source: Array, v: _Verdicts) -> Array:
    info = np.iinfo(rule.numpy)
    if source.dtype.kind == "f":
        v.refuse(~np.isfinite(source), lambda x: Reasons.not_finite(rule.name, x))
        with np.errstate(invalid="ignore"):
            fraction = np.floor(source) != source
            outside = (source < float(info.min)) | (source > float(info.max))
        v.refuse(fraction, lambda x: Reasons.wrong_type(rule.name, x, rule.spec.dtype))
    elif source.dtype.kind == "u":
        outside = source > np.uint64(info.max)
    elif source.dtype == rule.numpy:
        outside = np.zeros(len(source), dtype=bool)
    else:
        outside = (source < info.min) | (source > info.max)
    v.refuse(
        outside, lambda x: Reasons.outside_dtype(rule.name, x, rule.spec.dtype, info.min, info.max)
    )
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(v.wrong, 0, source).astype(rule.numpy)


def numeric(rule: InputRule, values: Array, rows: Array, bad: Bad) -> Array:
    """Check and cast numbers (``values`` flat, ``rows[i]`` the record of ``values[i]``) to the
    input's dtype; bad values are recorded against their row (first one per row wins) and
    hold 0 in the result."""
    v = _Verdicts(len(values))
    if values.dtype.kind == "b" and rule.numpy.kind != "b":
        v.refuse(
            np.ones(len(values), dtype=bool),
            lambda x: Reasons.wrong_type(rule.name, x, rule.spec.dtype),
        )
        out = np.zeros(len(values), dtype=rule.numpy)
    elif rule.numpy.kind == "b":
        out = _to_bool(rule, values, v)
    elif rule.numpy.kind == "f":
        out = _to_float(rule, values, v)
    else:
        out = _to_int(rule, values, v)
    if rule.low is not None or rule.high is not None:
        as_float = out.astype(np.float64)
        with np.errstate(invalid="ignore"):
            outside = (as_float < (-math.inf if rule.low is None else rule.low)) | (
                as_float > (math.inf if rule.high is None else rule.high)
            )
        v.refuse(outside, lambda x: Reasons.outside(rule.name, x, rule.low, rule.high))
    for mask, why in v.reasons:
        for pos in np.flatnonzero(mask):
            bad.setdefault(int(rows[pos]), why(values[pos]))
    if v.wrong.any():
        out = out.copy()
        out[v.wrong] = 0
    return out


def _one_number(rule: InputRule, value: Any) -> tuple[Array | None, str | None]:
    """A single value that was not in a clean number column: its array, or the reason."""
    if value is MISSING:
        return None, Reasons.missing(rule.name)
    if value is None:
        return None, Reasons.null(rule.name)
    kind = type(value)
    if _is_bool_type(kind) or _is_number_type(kind):
        return np.asarray([value]), None
    if rule.scalar and isinstance(value, list | tuple | np.ndarray):
        return None, Reasons.list_for_scalar(rule.name, value)
    return None, Reasons.wrong_type(rule.name, value, rule.spec.dtype)


def _one_text(rule: InputRule, value: Any) -> tuple[bytes | None, str | None]:
    if value is MISSING:
        return None, Reasons.missing(rule.name)
    if value is None:
        return None, Reasons.null(rule.name)
    if isinstance(value, str):
        if rule.categories is not None and value not in rule.categories:
            return None, Reasons.unknown_category(rule.name, value)
        return value.encode(), None
    if isinstance(value, bytes):
        if rule.categories is not None and value.decode(errors="replace") not in rule.categories:
            return None, Reasons.unknown_category(rule.name, value)
        return value, None
    if rule.scalar and isinstance(value, list | tuple | np.ndarray):
        return None, Reasons.list_for_scalar(rule.name, value)
    return None, Reasons.wrong_type(rule.name, value, "a string")


def text_column(rule: InputRule, values: Sequence[Any], bad: Bad) -> Array:
    """A BYTES input: strings are UTF-8 encoded, bytes are taken as they are."""
    kinds = set(map(type, values))
    out = np.empty(len(values), dtype=object)
    if kinds <= {bytes} and rule.categories is None:
        out[:] = list(values)
        return out
    if kinds <= {str}:
        out[:] = [v.encode() for v in values]
        if rule.categories is not None:
            known = np.isin(
                np.asarray(values, dtype=object), np.asarray(rule.categories, dtype=object)
            )
            for pos in np.flatnonzero(~known):
                bad.setdefault(pos, Reasons.unknown_category(rule.name, values[pos]))
                out[pos] = b""
        return out
    for pos, value in enumerate(values):
        encoded, reason = _one_text(rule, value)
        if reason is not None:
            bad.setdefault(pos, reason)
        out[pos] = encoded if encoded is not None else b""
    return out


def scalar_column(rule: InputRule, values: Any, bad: Bad) -> Array:
    """One number per record: a numpy array, or a sequence of Python values."""
    if rule.text:
        return text_column(rule, list(values) if isinstance(values, np.ndarray) else values, bad)
    n = len(values)
    if isinstance(values, np.ndarray) and values.dtype.kind in NUMBER_KINDS:
        if values.ndim == 1:
            return numeric(rule, values, np.arange(n), bad)
        values = [row.tolist() for row in values]  # a list a row (Arrow): refused as a record's
    kinds = set(map(type, values))
    one_kind = all(issubclass(k, float | np.floating) for k in kinds) or all(
        issubclass(k, int | np.integer) and not _is_bool_type(k) for k in kinds
    )
    if kinds and (one_kind or all(map(_is_bool_type, kinds))):
        try:
            array = np.asarray(values)
        except OverflowError:
            array = np.asarray([], dtype=object)
        if array.dtype.kind in NUMBER_KINDS and array.shape == (n,):
            return numeric(rule, array, np.arange(n), bad)
    return _mixed_numbers(rule, values, bad)


def _mixed_numbers(rule: InputRule, values: Sequence[Any], bad: Bad) -> Array:
    """A number column holding other things too: each value is looked at."""
    out = np.zeros(len(values), dtype=rule.numpy)
    good: list[int] = []
    for pos, value in enumerate(values):
        _, reason = _one_number(rule, value)
        if reason is not None:
            bad.setdefault(pos, reason)
        else:
            good.append(pos)
    if rule.numpy.kind != "b":  # a boolean is not a number here
        flags = [pos for pos in good if _is_bool_type(type(values[pos]))]
        for pos in flags:
            bad.setdefault(pos, Reasons.wrong_type(rule.name, values[pos], rule.spec.dtype))
        if flags:
            good = [pos for pos in good if not _is_bool_type(type(values[pos]))]
    if not good:
        return out
    # Floats and integers apart: one float64 array would round integers above 2**53.
    floats = [p for p in good if isinstance(values[p], float | np.floating)]
    ints = [p for p in good if not isinstance(values[p], float | np.floating)]
    for group in (floats, ints):
        if group:
            out[group] = _group(rule, [values[p] for p in group], group, bad)
    return out


def _group(rule: InputRule, picked: list[Any], rows: list[int], bad: Bad) -> Array:
    """Numbers of one kind (all floats, or all integers and booleans) at ``rows``."""
    array = np.asarray(picked)
    if array.dtype == object:  # ints too large for int64
        if rule.numpy.kind != "f":
            for pos, value in zip(rows, picked, strict=True):
                bad.setdefault(pos, _huge(rule, value))
            return np.zeros(len(rows), dtype=rule.numpy)
        array = np.asarray([float(v) if abs(v) < 2**1000 else math.inf for v in picked])
    return numeric(rule, array, np.asarray(rows), bad)


def _huge(rule: InputRule, value: Any) -> str:
    if rule.numpy.kind == "b" or _is_bool_type(type(value)):
        return Reasons.wrong_type(rule.name, value, rule.spec.dtype)
    return Reasons.outside_dtype(rule.name, value, rule.spec.dtype, *_limits(rule))


def _limits(rule: InputRule) -> tuple[Any, Any]:
    if rule.numpy.kind in "iu":
        info = np.iinfo(rule.numpy)
        return info.min, info.max
    finfo = np.finfo(rule.numpy)
    return f"{float(finfo.min):.6g}", f"{float(finfo.max):.6g}"


def _cell(value: str) -> list[float | int]:
    """A CSV cell holding a vector: ``"1,2,3"`` or ``"[1, 2, 3]"``."""
    parts = value.strip().strip("[]").replace(",", " ").split()
    out: list[float | int] = []
    for part in parts:
        number = float(part)
        out.append(
            int(number)
            if number.is_integer() and "." not in part and "e" not in part.lower()
            else number
        )
    return out


def vector_column(rule: InputRule, values: Any, bad: Bad) -> Array:
    """Several values per record (lists, arrays or CSV cells); every record holds the input's
    shape, a dynamic dim takes the first accepted record's length."""
    n = len(values)
    shape = rule.spec.shape
    width = rule.width
    if isinstance(values, np.ndarray) and values.dtype.kind in NUMBER_KINDS and values.ndim > 1:
        flat = values.reshape(n, -1)
        if not rule.text and width in (-1, flat.shape[1]):
            out = numeric(rule, flat.reshape(-1), np.repeat(np.arange(n), flat.shape[1]), bad)
            return out.reshape(n, *(shape if width != -1 else (flat.shape[1],)))
        # numbers for a text input, or rows of another length: judged row by row, as records
        # are (each value's type first, then the length)
        values = [row.tolist() for row in flat]
    if rule.text:
        return _text_vectors(rule, values, bad)
    try:
        kinds = {type(v) for v in values}
        array = np.asarray(values) if kinds <= {list, tuple, np.ndarray} else None
    except ValueError:
        array = None
    if array is not None and rule.numpy.kind != "b" and array.dtype.kind != "b" and _bools(values):
        array = None  # one array would cast a boolean among numbers: judged row by row
    if (
        array is not None
        and array.dtype.kind in NUMBER_KINDS
        and array.ndim > 1
        and width in (-1, array.reshape(n, -1).shape[1])
    ):
        return vector_column(rule, array, bad)
    parsed: list[Any] = []
    for pos, value in enumerate(values):
        items = _items(rule, pos, value, bad)
        if items is None:
            parsed.append(None)
            continue
        row_bad: Bad = {}
        converted = scalar_column(rule, items, row_bad)
        if row_bad:
            bad.setdefault(pos, row_bad[min(row_bad)])
            parsed.append(None)
        else:
            parsed.append(converted)
    return _stack(rule, parsed, bad, fill=0)


def _bools(rows: Any) -> bool:
    """Whether nested lists (or arrays) hold a boolean anywhere."""
    stack = list(rows)
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            if item.dtype.kind == "b":
                return True
            if item.dtype == object:
                stack.extend(item.reshape(-1).tolist())
        elif isinstance(item, bool | np.bool_):
            return True
    return False


def _text_vectors(rule: InputRule, values: Any, bad: Bad) -> Array:
    rows: list[Any] = []
    for pos, value in enumerate(values):
        items = _items(rule, pos, value, bad)
        cells = [_one_text(rule, v) for v in items] if items is not None else []
        reason = next((r for _, r in cells if r is not None), None)
        if reason is not None:
            bad.setdefault(pos, reason)
        rows.append(None if items is None or reason is not None else [c for c, _ in cells])
    return _stack(rule, rows, bad, fill=b"")


def _items(rule: InputRule, pos: int, value: Any, bad: Bad) -> list[Any] | None:
    if value is MISSING:
        bad.setdefault(pos, Reasons.missing(rule.name))
        return None
    if value is None:
        bad.setdefault(pos, Reasons.null(rule.name))
        return None
    if isinstance(value, str) and not rule.text:
        try:
            return list(_cell(value))
        except ValueError:
            bad.setdefault(
                pos, Reasons.wrong_type(rule.name, value, f"a list of {rule.spec.dtype}")
            )
            return None
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1))
    if isinstance(value, list | tuple):
        flat = (
            list(np.asarray(value, dtype=object).reshape(-1))
            if any(isinstance(v, list | tuple) for v in value)
            else list(value)
        )
        return flat
    bad.setdefault(pos, Reasons.wrong_type(rule.name, value, f"a list of {rule.spec.dtype}"))
    return None


def _stack(rule: InputRule, rows: list[Any], bad: Bad, fill: Any) -> Array:
    n = len(rows)
    shape = rule.spec.shape
    width = rule.width
    if width == -1:
        lengths = [len(r) for r in rows if r is not None]
        width = lengths[0] if lengths else 1
    target: Any = object if rule.text else rule.numpy
    out = np.full((n, width), fill, dtype=target)
    for pos, row in enumerate(rows):
        if row is None:
            continue
        if len(row) != width:
            bad.setdefault(pos, Reasons.wrong_length(rule.name, len(row), rule.spec))
            continue
        out[pos] = row
    final = tuple(width if d == -1 else d for d in shape) if rule.width == -1 else shape
    return out.reshape(n, *final)
