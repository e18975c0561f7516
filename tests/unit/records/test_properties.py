"""Properties of the records contract over generated signatures and records: records, columns
and Arrow tables of the same values get the same verdicts and the same tensors, and what is
accepted is exactly what converts without loss."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tritonpipe.records import Contract
from tritonpipe.tensors import TensorSpec

DTYPES = ["FP32", "FP64", "INT32", "INT64", "BOOL", "BYTES"]

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)


@st.composite
def signatures(draw: Any) -> Contract:
    count = draw(st.integers(1, 3))
    specs = []
    ranges: dict[str, list[float]] = {}
    for i in range(count):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.sampled_from([(1,), (1,), (2,)]))
        specs.append(TensorSpec(name=f"in{i}", dtype=dtype, shape=shape))
        if dtype in ("INT32", "INT64") and draw(st.booleans()):
            ranges[f"in{i}"] = [0, 49]
    return Contract.from_specs(specs, [], ranges=ranges)


def _value(rule: Any) -> Any:
    scalar = {
        "FP32": st.floats(width=32, allow_nan=False, allow_infinity=False),
        "FP64": st.floats(allow_nan=False, allow_infinity=False),
        "INT32": st.integers(-(2**31), 2**31 - 1),
        "INT64": st.integers(-(2**63), 2**63 - 1),
        "BOOL": st.booleans(),
        "BYTES": st.text(max_size=8),
    }[rule.spec.dtype]
    if rule.low is not None:
        scalar = st.integers(int(rule.low), int(rule.high))
    good = scalar if rule.scalar else st.lists(scalar, min_size=2, max_size=2)
    bad = ANY_VALUE if rule.scalar else st.one_of(ANY_VALUE, st.lists(ANY_VALUE, max_size=3))
    return st.one_of(good, good, bad)


@st.composite
def cases(draw: Any) -> tuple[Contract, list[dict[str, Any]]]:
    contract = draw(signatures())
    rows = draw(st.integers(1, 6))
    records = [{r.name: draw(_value(r)) for r in contract.inputs} for _ in range(rows)]
    return contract, records


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tolist() == b[name].tolist(), name


@settings(max_examples=300, deadline=None)
@given(cases())
def test_records_and_columns_agree(case: tuple[Contract, list[dict[str, Any]]]) -> None:
    contract, records = case
    by_records = contract.from_records(records)
    by_columns = contract.from_columns(
        {r.name: [rec[r.name] for rec in records] for r in contract.inputs}
    )
    assert [(r.row, r.reason) for r in by_records.refusals] == [
        (r.row, r.reason) for r in by_columns.refusals
    ]
    _same(by_records.inputs, by_columns.inputs)
    assert len({r.row for r in by_records.refusals}) == len(by_records.refusals)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_accepted_values_are_kept_exactly(case: tuple[Contract, list[dict[str, Any]]]) -> None:
    contract, records = case
    converted = contract.from_records(records)
    refused = {r.row for r in converted.refusals}
    for row, record in enumerate(records):
        if row in refused:
            continue
        for rule in contract.inputs:
            got = converted.inputs[rule.name][row].reshape(-1).tolist()
            want = record[rule.name] if isinstance(record[rule.name], list) else [record[rule.name]]
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                if rule.text:
                    assert g == w.encode()
                elif rule.spec.dtype == "FP32":
                    assert g == float(np.float32(w))
                else:
                    assert g == w and type(w) is not bool or rule.spec.dtype == "BOOL"
                    assert not (isinstance(w, float) and not math.isfinite(w))


@settings(max_examples=150, deadline=None)
@given(cases())
def test_arrow_tables_agree_with_records(case: tuple[Contract, list[dict[str, Any]]]) -> None:
    contract, records = case
    columns = {r.name: [rec[r.name] for rec in records] for r in contract.inputs}
    try:
        table = pa.table(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return  # mixed types Arrow itself cannot hold in one column
    by_records = contract.from_records(table.to_pylist())
    by_table = contract.from_columns(table)
    assert [(r.row, r.reason) for r in by_records.refusals] == [
        (r.row, r.reason) for r in by_table.refusals
    ]
    _same(by_records.inputs, by_table.inputs)
