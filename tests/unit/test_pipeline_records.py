"""The in-process Pipeline takes what users hold: pandas float64 columns, 1-D columns, dicts of
lists, Arrow tables and JSON records, converted by the records contract; a bad value raises
PipelineError naming the row and input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from tritonpipe.errors import PipelineError
from tritonpipe.pipeline import Pipeline
from tritonpipe.records import Refusal

STAGE = """
import numpy as np


def label(temperature, kind):
    hot = temperature[:, 0] > 80
    names = np.where(hot, "alert", "ok")
    text = np.array([[f"{n}:{k[0].decode()}".encode()] for n, k in zip(names, kind)], dtype=object)
    return {"alert": text, "score": temperature.astype(np.float32) / 100}
"""


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    (tmp_path / "stages.py").write_text(STAGE)
    spec = {
        "stages": {
            "label": {
                "function": "stages.py:label",
                "inputs": [
                    {"name": "temperature", "dtype": "FP32", "shape": [1], "range": [-50, 150]},
                    {"name": "kind", "dtype": "BYTES", "shape": [1], "categories": ["a", "b"]},
                ],
                "outputs": [
                    {"name": "alert", "dtype": "BYTES", "shape": [1]},
                    {"name": "score", "dtype": "FP32", "shape": [1]},
                ],
            }
        }
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return Pipeline.load(tmp_path / "pipeline.yaml", "label", threads=1)


def test_float64_and_one_dimensional_columns(pipe: Pipeline) -> None:
    frame = pd.DataFrame({"temperature": [70.5, 90.25], "kind": ["a", "b"]})
    for given in (
        frame,
        {"temperature": frame["temperature"].to_numpy(), "kind": ["a", "b"]},  # 1-D float64
        frame.to_dict("list"),
        pa.Table.from_pandas(frame),
    ):
        out = pipe(given)
        assert out["alert"].tolist() == [[b"ok:a"], [b"alert:b"]]
        assert out["score"].dtype == np.float32


def test_bad_values_raise_naming_row_and_input(pipe: Pipeline) -> None:
    with pytest.raises(PipelineError) as failed:
        pipe({"temperature": [70.0, None, 200.0, 1.0], "kind": ["a", "a", "a", 3]})
    assert failed.value.invalid
    assert str(failed.value) == (
        "pipeline 'label': record 1: input 'temperature': null; "
        "record 2: input 'temperature': 200 is outside [-50, 150]; "
        "record 3: input 'kind': 3 is not a string"
    )
    with pytest.raises(PipelineError, match="has no input 'temp'"):
        pipe({"temp": [1.0], "kind": ["a"]})


def test_run_records(pipe: Pipeline) -> None:
    results = pipe.run_records(
        [{"temperature": 95, "kind": "b"}, {"temperature": 20.0, "kind": "c"}, {"kind": "a"}]
    )
    assert results == [
        {"alert": "alert:b", "score": 0.949999988079071},
        Refusal(row=1, input="kind", reason="input 'kind': unknown category 'c'"),
        Refusal(row=2, input="temperature", reason="input 'temperature': missing"),
    ]
