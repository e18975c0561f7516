"""Prediction logs as columns: the records the predlog readers return, turned into a feature
matrix and a prediction vector with pyarrow (no Python loop over rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.errors import MonitorError

Array = np.ndarray[Any, Any]


def load(source: str | Path) -> Any:
    """All records at ``source`` (a Parquet log folder or ``redis://...#stream``), by time."""
    from tritonpipe.predlog import read_logs

    return read_logs(source)


def feature_matrix(frame: Any, width: int, column: str = "features") -> Array:
    """[rows, width] float64 from the list column ``features`` (nulls become NaN)."""
    import pyarrow as pa

    if column not in frame:
        raise MonitorError(f"prediction logs have no {column!r} column (log the feature tensor)")
    lists = pa.array(frame[column], from_pandas=True)
    if lists.null_count:
        lists = lists.fill_null([None] * width)
    lengths = lists.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != width or lengths.max() != width):
        raise MonitorError(
            f"column {column!r}: rows hold {lengths.min()}..{lengths.max()} values, "
            f"the reference profile has {width} features"
        )
    values = np.asarray(lists.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    return values.reshape(len(frame), width)


def log_column(frame: Any, column: str) -> Array:
    """The values of a scalar log column (a profile feature read by name), as numpy."""
    if column not in frame:
        raise MonitorError(
            f"prediction logs have no {column!r} column (the reference profile reads feature "
            f"{column!r} from it; columns: {', '.join(map(str, frame.columns))})"
        )
    return np.asarray(frame[column].to_numpy())


def prediction_vector(frame: Any, column: str) -> Array:
    if column not in frame:
        found = ", ".join(c for c in frame.columns if c.startswith("output_"))
        raise MonitorError(f"prediction logs have no {column!r} column (outputs: {found})")
    values = frame[column]
    if len(values) and isinstance(values.iloc[0], list | np.ndarray):
        return feature_matrix(frame, 1, column)[:, 0]
    return np.asarray(values, dtype=np.float64)
