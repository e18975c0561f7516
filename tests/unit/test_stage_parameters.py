"""Stage parameters take any JSON value (lists, nested mappings), passed to the function as
written, in the compiled plan and the in-process pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tritonpipe.ensembles.plan import resolve_steps
from tritonpipe.ensembles.spec import load_spec
from tritonpipe.errors import SpecError
from tritonpipe.pipeline import Pipeline

STAGE = """
import numpy as np


def scale(x, means, stds, labels, extra=None):
    z = (x - np.asarray(means, dtype=np.float32)) / np.asarray(stds, dtype=np.float32)
    name = labels["high"]["name"] if z.sum() > 0 else labels["low"]["name"]
    return {"z": z.astype(np.float32), "label": np.array([[name.encode()]] * len(x), dtype=object)}
"""

PARAMETERS = {
    "means": [1.0, 2.0],
    "stds": [0.5, 4.0],
    "labels": {"high": {"name": "high", "rank": 1}, "low": {"name": "low", "rank": None}},
    "extra": [[1, "a"], {"b": True}],
}


def _spec(tmp_path: Path, parameters: object) -> Path:
    (tmp_path / "stages.py").write_text(STAGE)
    spec = {
        "stages": {
            "scale": {
                "function": "stages.py:scale",
                "parameters": parameters,
                "inputs": [{"name": "x", "dtype": "FP32", "shape": [2]}],
                "outputs": [
                    {"name": "z", "dtype": "FP32", "shape": [2]},
                    {"name": "label", "dtype": "BYTES", "shape": [1]},
                ],
            }
        }
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "pipeline.yaml"


def test_lists_and_nested_mappings_reach_the_function(tmp_path: Path) -> None:
    path = _spec(tmp_path, PARAMETERS)
    steps = resolve_steps(load_spec(path), tmp_path)
    assert steps["scale"].kwargs == PARAMETERS
    pipe = Pipeline.load(path, "scale", threads=1)
    out = pipe({"x": np.array([[2.0, 6.0]])})  # float64 in: converted to FP32
    np.testing.assert_allclose(out["z"], [[2.0, 1.0]])
    assert out["label"].tolist() == [[b"high"]]


def test_a_parameter_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = _spec(tmp_path, {"since": "DATE"})
    path.write_text(path.read_text().replace("DATE", "2026-12-02"))  # YAML reads a date
    with pytest.raises(SpecError, match="stages.scale.parameters.since"):
        load_spec(path)
