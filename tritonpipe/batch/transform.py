"""The feature lookup's transform, run by a batch job on point-in-time features from Feast.

Online, the lookup step reads stored features from the online store and calls the spec's
``transform(stored, request)`` for the on-demand features. A batch job over a Feast source reads
the same stored features from the offline store instead (point-in-time correct) and calls the
very same function, so training, serving and batch scoring share one feature definition.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.batch.rows import BadRow
from tritonpipe.errors import BatchError
from tritonpipe.tensors import Array

Transform = Callable[[Mapping[str, Array], Mapping[str, Array]], Mapping[str, Array]]


@lru_cache(maxsize=4)
def load_transform(ref: str) -> Transform:
    """``path/to/file.py:function``; the file's folder goes on sys.path for its imports."""
    file, _, name = ref.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise BatchError(f"transform {ref}: no file {path}")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # the transform may import its neighbours
    spec = importlib.util.spec_from_file_location(f"_tritonpipe_batch_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's module failed to import: name it
        raise BatchError(f"transform {ref}: cannot import {path}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise BatchError(f"transform {ref}: {path} has no function {name}")
    return function  # type: ignore[no-any-return]


FOUND = "entity_found"


def apply(
    ref: str, frame: Any, stored: list[str], service: str, missing: str = "bad"
) -> tuple[dict[str, Array], list[BadRow]]:
    """The transform's outputs for every row. A row missing a stored feature gets zeros; it is
    reported with the feature's name (``missing`` bad) or flagged false in column
    ``entity_found`` (``missing`` defaults)."""
    bad: list[BadRow] = []
    values: dict[str, Array] = {}
    found = np.ones(len(frame), dtype=bool)
    for name in stored:
        column = frame[name]
        nulls = column.isna().to_numpy()
        found &= ~nulls
        if missing == "defaults":
            values[name] = column.fillna(0).to_numpy(dtype=np.float64)
            continue
        for pos in np.flatnonzero(nulls):
            when = frame["event_timestamp"].iloc[pos] if "event_timestamp" in frame else "?"
            reason = f"no value as of {when} in feature service '{service}'"
            bad.append(BadRow(position=int(pos), column=name, reason=reason))
        values[name] = column.fillna(0).to_numpy(dtype=np.float64)
    frame[FOUND] = found
    request = {
        str(c): frame[c].to_numpy()
        for c in frame.columns
        if c not in stored and c != FOUND and frame[c].dtype.kind in "biuf"
    }
    try:
        out = dict(load_transform(ref)(values, request))
    except BatchError:
        raise
    except Exception as exc:  # a missing column or a shape error in user code: name the function
        raise BatchError(f"transform {ref} failed: {type(exc).__name__}: {exc}") from None
    rows = len(frame)
    for name, array in out.items():
        if len(array) != rows:
            raise BatchError(f"transform {ref}: output '{name}' has {len(array)} rows, not {rows}")
    return {k: np.asarray(v) for k, v in out.items()}, bad
