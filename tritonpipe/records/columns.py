"""Columns from pandas, pyarrow or a dict, as the numpy arrays or Python values ``values`` reads.

pandas and pyarrow are imported only when such an object is handed in. A null in an object
(string) column or an Arrow column is a null; in a pandas float64 column NaN is the value NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tritonpipe.records.rules import NUMBER_KINDS


def column_names(data: Any) -> list[str]:
    if isinstance(data, Mapping):
        return [str(k) for k in data]
    if hasattr(data, "column_names"):  # pyarrow Table / RecordBatch
        return [str(c) for c in data.column_names]
    return [str(c) for c in data.columns]  # pandas DataFrame


def row_count(data: Any) -> int:
    if isinstance(data, Mapping):
        return len(next(iter(data.values()))) if data else 0
    if hasattr(data, "num_rows"):
        return int(data.num_rows)
    return len(data)


def column(data: Any, name: str) -> Any:
    """Column ``name`` as a numpy number array (no nulls) or a list of Python values."""
    if isinstance(data, Mapping):
        values = data[name]
        if isinstance(values, np.ndarray):
            return values if values.dtype.kind in NUMBER_KINDS else list(values)
        if type(values).__module__.startswith(("pandas", "pyarrow")):
            return _series(values) if values.__class__.__name__ == "Series" else _arrow(values)
        return values
    if hasattr(data, "column_names"):
        return _arrow(data.column(name))
    return _series(data[name])


def _series(series: Any) -> Any:
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in NUMBER_KINDS:
        return series.to_numpy()
    nulls = series.isna().to_numpy()
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        values = series.tolist()
        for pos in np.flatnonzero(nulls):
            if not isinstance(values[pos], float):  # NaN floats among objects stay NaN
                values[pos] = None
        return values
    if not nulls.any() and isinstance(dtype, pd.api.extensions.ExtensionDtype):
        numpy_type = getattr(dtype, "numpy_dtype", None)
        if numpy_type is not None and numpy_type.kind in NUMBER_KINDS:
            return series.to_numpy(dtype=numpy_type)
    values = series.astype(object).tolist()
    for pos in np.flatnonzero(nulls):
        values[pos] = None
    return values


def _arrow(chunked: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = chunked.type
    if chunked.null_count == 0:
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            return chunked.to_numpy()
        if (
            pa.types.is_fixed_size_list(kind)
            or pa.types.is_list(kind)
            or pa.types.is_large_list(kind)
        ):
            flat_type = kind.value_type
            if pa.types.is_integer(flat_type) or pa.types.is_floating(flat_type):
                lengths = pc.list_value_length(chunked).to_numpy(zero_copy_only=False)
                flat = pc.list_flatten(chunked)
                if len(lengths) and (lengths == lengths[0]).all() and flat.null_count == 0:
                    return flat.to_numpy().reshape(len(lengths), int(lengths[0]))
    return chunked.to_pylist()
