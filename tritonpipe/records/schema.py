"""The type each sink stores an output as, from the same output rules: Arrow/Parquet, SQL
(SQLite, PostgreSQL) and Spark. Text BYTES outputs are strings everywhere, binary ones bytes.

pyarrow and pyspark are imported only by the function that needs them.
"""

from __future__ import annotations

from typing import Any

from tritonpipe.records.rules import OutputRule

_ARROW_NUMBERS = {
    "BOOL": "bool_",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "float32",
}


def arrow_type(rule: OutputRule) -> Any:
    """``string``/``binary``/a number type, or a list of it for a vector output."""
    import pyarrow as pa

    if rule.kind == "text":
        item = pa.string()
    elif rule.kind == "binary":
        item = pa.binary()
    else:
        item = getattr(pa, _ARROW_NUMBERS[rule.spec.dtype])()
    if rule.scalar:
        return item
    for _ in rule.spec.shape[1:]:
        item = pa.list_(item)
    return pa.list_(item)


_SQL = {
    "sqlite": {
        "text": "TEXT",
        "binary": "BLOB",
        "bool": "INTEGER",
        "int": "INTEGER",
        "float": "REAL",
    },
    "postgresql": {
        "text": "TEXT",
        "binary": "BYTEA",
        "bool": "BOOLEAN",
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
    },
}


def sql_type(rule: OutputRule, dialect: str) -> str:
    """The column type in ``dialect`` (``sqlite`` or ``postgresql``); vectors are stored as JSON
    text in SQLite and as arrays in PostgreSQL."""
    kind = _SQL[dialect][rule.kind]
    if rule.scalar:
        return kind
    return "TEXT" if dialect == "sqlite" else f"{kind}[]"


def spark_type(rule: OutputRule) -> Any:
    """``StringType``/``BinaryType``/a number type, or an ``ArrayType`` of it."""
    from pyspark.sql import types as T

    numbers = {
        "BOOL": T.BooleanType(),
        "UINT8": T.ShortType(),
        "UINT16": T.IntegerType(),
        "UINT32": T.LongType(),
        "UINT64": T.LongType(),
        "INT8": T.ByteType(),
        "INT16": T.ShortType(),
        "INT32": T.IntegerType(),
        "INT64": T.LongType(),
        "FP16": T.FloatType(),
        "FP32": T.FloatType(),
        "FP64": T.DoubleType(),
        "BF16": T.FloatType(),
    }
    if rule.kind == "text":
        item: Any = T.StringType()
    elif rule.kind == "binary":
        item = T.BinaryType()
    else:
        item = numbers[rule.spec.dtype]
    if rule.scalar:
        return item
    for _ in rule.spec.shape[1:]:
        item = T.ArrayType(item)
    return T.ArrayType(item)
