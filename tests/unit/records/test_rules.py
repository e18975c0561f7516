"""The records contract's rules: what converts, and the one reason each bad value gets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tritonpipe.errors import RecordError
from tritonpipe.records import Contract
from tritonpipe.tensors import TensorSpec


def _spec(name: str, dtype: str, shape: tuple[int, ...] = (1,)) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=shape)


SENSORS = Contract.from_specs(
    [
        _spec("temperature", "FP32"),
        _spec("cat", "INT64"),
        _spec("sensor_type", "BYTES"),
        _spec("v", "FP32", (3,)),
    ],
    [_spec("alert", "BYTES"), _spec("score", "FP32"), _spec("blob", "BYTES")],
    ranges={"cat": [0, 49]},
    categories={"sensor_type": ["motor", "pump"]},
    binary=["blob"],
)
GOOD = {"temperature": 20.5, "cat": 3, "sensor_type": "motor", "v": [1, 2, 3]}


def _reason(**change: object) -> str | None:
    record = {**GOOD, **change}
    for key, value in change.items():
        if value is KeyError:
            del record[key]
    converted = SENSORS.from_records([record])
    return converted.refusals[0].reason if converted.refusals else None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"temperature": None}, "input 'temperature': null"),
        ({"temperature": KeyError}, "input 'temperature': missing"),
        ({"temperature": math.nan}, "input 'temperature': nan is not a finite number"),
        ({"temperature": -math.inf}, "input 'temperature': -inf is not a finite number"),
        ({"temperature": "hot"}, "input 'temperature': 'hot' is not FP32"),
        ({"temperature": True}, "input 'temperature': true is not FP32"),
        (
            {"temperature": 1e300},
            "input 'temperature': 1e+300 is outside FP32 [-3.40282e+38, 3.40282e+38]",
        ),
        ({"cat": 1.5}, "input 'cat': 1.5 is not INT64"),
        ({"cat": 50}, "input 'cat': 50 is outside [0, 49]"),
        ({"cat": -1.0}, "input 'cat': -1 is outside [0, 49]"),
        (
            {"cat": 2**70},
            f"input 'cat': {2**70} is outside INT64 [-9223372036854775808, 9223372036854775807]",
        ),
        ({"sensor_type": 7}, "input 'sensor_type': 7 is not a string"),
        ({"sensor_type": "fan"}, "input 'sensor_type': unknown category 'fan'"),
        (
            {"temperature": [71.5, 72]},
            "input 'temperature': takes one value per row, got a list ([71.5, 72])",
        ),
        ({"cat": [3]}, "input 'cat': takes one value per row, got a list ([3])"),
        (
            {"sensor_type": ["motor"]},
            "input 'sensor_type': takes one value per row, got a list (['motor'])",
        ),
        ({"v": [1, 2]}, "input 'v': 2 values, wants FP32[3]"),
        ({"v": [1, None, 3]}, "input 'v': null"),
        ({"v": 4}, "input 'v': 4 is not a list of FP32"),
        ({"v": "1,2,x"}, "input 'v': '1,2,x' is not a list of FP32"),
    ],
)
def test_each_bad_value_gets_one_reason(change: dict[str, object], reason: str) -> None:
    assert _reason(**change) == reason


def test_lossless_values_convert() -> None:
    converted = SENSORS.from_records(
        [GOOD, {**GOOD, "cat": 7.0, "temperature": 3, "v": "4,5,6"}, {**GOOD, "v": (7.5, 8, 9)}]
    )
    assert converted.refusals == []
    assert converted.inputs["temperature"].dtype == np.float32
    assert converted.inputs["temperature"].shape == (3, 1)
    assert converted.inputs["cat"].tolist() == [[3], [7], [3]]
    assert converted.inputs["sensor_type"].tolist() == [[b"motor"]] * 3
    assert converted.inputs["v"].tolist() == [[1, 2, 3], [4, 5, 6], [7.5, 8, 9]]


def test_one_refusal_per_record_in_signature_order() -> None:
    converted = SENSORS.from_records(
        [GOOD, {**GOOD, "sensor_type": "fan", "temperature": None}, [1, 2], GOOD],
        id_field=None,
    )
    assert [(r.row, r.input, r.reason) for r in converted.refusals] == [
        (1, "temperature", "input 'temperature': null"),
        (2, "", "record: not an object (list)"),
    ]
    assert converted.accepted.tolist() == [True, False, False, True]
    assert converted.accepted_inputs()["cat"].shape == (2, 1)


def test_missing_id_is_refused_before_inputs() -> None:
    converted = SENSORS.from_records(
        [{**GOOD, "id": "a"}, {**GOOD, "temperature": None}, {**GOOD, "id": None}], id_field="id"
    )
    assert [r.reason for r in converted.refusals] == ["id 'id': missing", "id 'id': missing"]
    assert converted.ids == ["a", None, None]


def test_nan_allowed_where_the_input_says_so() -> None:
    contract = Contract.from_specs([_spec("x", "FP64")], [], allow_nan=["x"])
    converted = contract.from_records([{"x": math.nan}, {"x": math.inf}, {"x": None}])
    assert [r.reason for r in converted.refusals] == ["input 'x': null"]
    assert math.isnan(converted.inputs["x"][0, 0])


def test_manifest_value_ranges_are_half_open() -> None:
    contract = Contract.from_specs([_spec("cat", "INT64")], [], value_ranges={"cat": [0, 50]})
    reasons = [r.reason for r in contract.from_records([{"cat": 49}, {"cat": 50}]).refusals]
    assert reasons == ["input 'cat': 50 is outside [0, 49]"]


def test_integer_and_bool_dtypes() -> None:
    contract = Contract.from_specs([_spec("small", "INT8"), _spec("flag", "BOOL")], [])
    converted = contract.from_records(
        [{"small": 5, "flag": True}, {"small": 300, "flag": 1}, {"small": 1, "flag": 2}]
    )
    assert [r.reason for r in converted.refusals] == [
        "input 'small': 300 is outside INT8 [-128, 127]",
        "input 'flag': 2 is not BOOL",
    ]
    assert converted.inputs["small"].dtype == np.int8
    assert converted.inputs["flag"].tolist() == [[True], [False], [False]]


FRAME = pd.DataFrame(
    {
        "temperature": [20.5, np.nan, 3.0, 4.0],
        "cat": [1, 2, 60, 4],
        "sensor_type": ["motor", "pump", "pump", None],
        "v": [[1.0, 2, 3], [1, 2, 3], [1, 2, 3], [4, 5, 6]],
    }
)


def test_dataframe_columns() -> None:
    converted = SENSORS.from_columns(FRAME)
    assert [(r.row, r.reason) for r in converted.refusals] == [
        (1, "input 'temperature': nan is not a finite number"),  # NaN is a value in float64
        (2, "input 'cat': 60 is outside [0, 49]"),
        (3, "input 'sensor_type': null"),
    ]
    assert converted.inputs["v"].dtype == np.float32


def test_arrow_columns_keep_null_apart_from_nan() -> None:
    table = pa.table(
        {
            "temperature": pa.array([20.5, None, math.nan, 4.0]),
            "cat": pa.array([1, 2, 60, 4]),
            "sensor_type": pa.array(["motor", "pump", "pump", "fan"]),
            "v": pa.array([[1.0, 2, 3]] * 4, type=pa.list_(pa.float64())),
        }
    )
    converted = SENSORS.from_columns(table)
    assert [(r.row, r.reason) for r in converted.refusals] == [
        (1, "input 'temperature': null"),
        (2, "input 'temperature': nan is not a finite number"),
        (3, "input 'sensor_type': unknown category 'fan'"),
    ]


def test_dict_of_columns_and_a_missing_column() -> None:
    data = {
        "temperature": np.array([1.0]),
        "cat": [3],
        "sensor_type": ["pump"],
        "v": np.ones((1, 3)),
    }
    assert SENSORS.from_columns(data).refusals == []
    with pytest.raises(
        RecordError, match=r"no column 'v' \(input 'v', FP32\[3\]\); columns: cat, "
    ):
        SENSORS.from_columns({k: v for k, v in data.items() if k != "v"})


def test_check_arrays_takes_float64_and_one_dimensional_columns() -> None:
    converted = SENSORS.check_arrays(
        {
            "temperature": np.array([1.0, 2.0]),
            "cat": np.array([1, 2]),
            "sensor_type": np.array(["motor", "pump"]),
            "v": np.ones((2, 3)),
        }
    )
    assert converted.refusals == []
    assert converted.inputs["temperature"].shape == (2, 1)
    assert converted.inputs["temperature"].dtype == np.float32
    assert converted.inputs["sensor_type"].tolist() == [[b"motor"], [b"pump"]]


def test_outputs_to_records() -> None:
    records, failures = SENSORS.to_records(
        {
            "alert": np.array([[b"ok"], [b"alert"], [b"\xff"]], dtype=object),
            "score": np.array([[0.5], [1.0], [2.0]], dtype=np.float32),
            "blob": np.array([[b"\x00\x01"], [b""], [b"z"]], dtype=object),
        }
    )
    assert records[:2] == [
        {"alert": "ok", "score": 0.5, "blob": b"\x00\x01"},
        {"alert": "alert", "score": 1.0, "blob": b""},
    ]
    assert [(f.row, f.input, f.reason) for f in failures] == [
        (2, "alert", "output 'alert': not UTF-8 text (b'\\xff')")
    ]


def test_columns_reason_names_the_input_and_its_field() -> None:
    contract = SENSORS.with_fields({"temperature": "temp_c"})
    converted = contract.from_records([{**GOOD, "temp_c": None}])
    assert converted.refusals[0].reason == "input 'temperature': null"
    assert contract.input("temperature").key == "temp_c"


def test_record_error_lists_refusals() -> None:
    converted = SENSORS.from_records([GOOD, {**GOOD, "cat": 99}])
    with pytest.raises(RecordError, match=r"^record 1: input 'cat': 99 is outside \[0, 49\]$"):
        converted.raise_refusals()


def test_module_imports_only_numpy_and_the_standard_library() -> None:
    """The Triton backend imports it: no pandas, pyarrow or pydantic at import time."""
    import subprocess
    import sys

    code = (
        "import sys, tritonpipe.records; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'pyarrow', 'pydantic', 'yaml'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_booleans_among_big_integers_do_not_round_them() -> None:
    """Found by test_properties: a boolean in an INT64 column made the column float64."""
    contract = Contract.from_specs([_spec("n", "INT64")], [])
    converted = contract.from_records([{"n": 2**53 + 1}, {"n": False}])
    assert converted.inputs["n"][0, 0] == 2**53 + 1
    assert [r.reason for r in converted.refusals] == ["input 'n': false is not INT64"]


@pytest.mark.parametrize("cell", [[3.0], [1.0, 2.0], [1, 2], []])
def test_a_list_cell_for_a_scalar_input_is_refused_as_a_record_is(cell: list[float]) -> None:
    """An Arrow list column (or pandas arrays) for a scalar input: the record's verdict, not a
    crash (a 2-D column) nor a silent unwrap of a one-value list."""
    contract = Contract.from_specs([_spec("x", "FP64")], [])
    record = contract.from_records([{"x": cell}]).refusals
    arrow = contract.from_columns(pa.table({"x": [cell]})).refusals
    frame = contract.from_columns(pd.DataFrame({"x": [np.array(cell)]})).refusals
    assert [r.reason for r in record] == [
        f"input 'x': takes one value per row, got a list ({cell!r})"
    ]
    assert [r.reason for r in arrow] == [r.reason for r in frame] == [r.reason for r in record]
    if len(cell) > 1:  # typed rows of 2+ values (in-process): the same verdict, no reshape error
        arrays = contract.check_arrays({"x": np.array([cell])}).refusals
        assert [r.reason for r in arrays] == [r.reason for r in record]


@pytest.mark.parametrize("dtype", ["BYTES", "INT32", "FP32"])
@pytest.mark.parametrize("cell", [[0], [0.5], [True], [1, 2, 3], [0, 0, 9], [0.5, 1, 2, 3]])
def test_an_arrow_list_cell_for_a_vector_input_gets_the_record_s_reason(
    dtype: str, cell: list[float]
) -> None:
    """A list column read from Parquet is judged as the same list in a record: each value's
    type first (numbers for a string input), then the length, then the range."""
    ranges = {"x": [0, 4]} if dtype == "INT32" else None
    contract = Contract.from_specs([_spec("x", dtype, (3,))], [], ranges=ranges)
    record = [r.reason for r in contract.from_records([{"x": cell}]).refusals]
    arrow = [r.reason for r in contract.from_columns(pa.table({"x": [cell]})).refusals]
    assert arrow == record


def test_booleans_in_a_list_for_a_number_vector_are_refused() -> None:
    """Found by test_properties: [False, False] beside [0.0, 0.0] was cast to 0.0 and accepted."""
    contract = Contract.from_specs([_spec("v", "FP64", (2,))], [])
    converted = contract.from_records([{"v": [0.0, 1.5]}, {"v": [False, False]}])
    assert converted.inputs["v"][0].tolist() == [0.0, 1.5]
    assert [r.row for r in converted.refusals] == [1]
    assert "is not FP64" in converted.refusals[0].reason
