"""What the README and tritonpipe/errors.py say about errors, held to the code: in-process every
failure is a PipelineError (``invalid`` when the input was at fault), importable from
tritonpipe.pipeline, and the tree drawn in errors.py is the real class hierarchy."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import tritonpipe.errors as errors
from tests.conftest import ROOT
from tritonpipe.errors import InputError

STAGE = """
import numpy as np

def double(x):
    if (x < 0).any():
        raise ValueError("x must not be negative")
    return {"y": x * 2}

def broken(x):
    return {"y": x[:, :1] * (1 // 0)}
"""

SPEC = """
stages:
  double:
    function: stages.py:double
    inputs: [{name: x, dtype: FP32, shape: [3]}]
    outputs: [{name: y, dtype: FP32, shape: [3]}]
  broken:
    function: stages.py:broken
    inputs: [{name: x, dtype: FP32, shape: [3]}]
    outputs: [{name: y, dtype: FP32, shape: [1]}]
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "stages.py").write_text(STAGE)
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    return tmp_path / "pipeline.yaml"


def test_readme_says_in_process_errors_are_pipeline_errors() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "Errors are `PipelineError`" in readme
    assert "from tritonpipe.pipeline import Pipeline, PipelineError" in readme


def test_every_in_process_failure_is_caught_by_except_pipeline_error(spec: Path) -> None:
    from tritonpipe.pipeline import Pipeline, PipelineError, PipelineInputError

    pipe = Pipeline.load(spec, "double")
    assert pipe({"x": np.ones((2, 3), np.float32)})["y"].tolist() == [[2.0] * 3] * 2
    bad_inputs = [
        {"x": np.full((2, 3), "a")},  # a type that does not convert (int64 would, losslessly)
        {"x": np.ones((2, 4), np.float32)},  # shape
        {},  # missing
    ]
    for inputs in bad_inputs:
        with pytest.raises(PipelineError) as info:
            pipe(inputs)
        assert info.value.invalid is True
        assert isinstance(info.value, PipelineInputError | InputError)
        assert "input 'x'" in str(info.value) or "'x'" in str(info.value)
    with pytest.raises(PipelineError) as rejected:  # the stage refuses the values
        pipe({"x": -np.ones((1, 3), np.float32)})
    assert rejected.value.invalid is True and "x must not be negative" in str(rejected.value)
    with pytest.raises(PipelineError) as bug:  # a bug in the stage: not the caller's fault
        Pipeline.load(spec, "broken")({"x": np.ones((1, 3), np.float32)})
    assert bug.value.invalid is False and "ZeroDivisionError" in str(bug.value)


def test_run_requests_returns_pipeline_errors_for_bad_inputs(spec: Path) -> None:
    from tritonpipe.pipeline import Pipeline, PipelineError

    good, bad = Pipeline.load(spec, "double").run_requests(
        [{"x": np.ones((1, 3), np.float32)}, {"x": np.ones((1, 3), np.int32)}]
    )
    assert isinstance(good, dict)
    assert isinstance(bad, PipelineError) and bad.invalid


def test_the_tree_in_errors_py_is_the_class_hierarchy() -> None:
    doc = errors.__doc__ or ""
    parents: list[type] = []
    drawn: set[str] = set()
    for line in doc.splitlines():
        match = re.match(r"^([│ ]*)(?:[├└]── )?([A-Z]\w+)\b", line)
        if not match or not hasattr(errors, match[2]):
            continue
        depth = len(match[1]) // 4 + (1 if "──" in line else 0)
        cls = getattr(errors, match[2])
        del parents[depth:]
        if parents:
            assert issubclass(cls, parents[-1]), f"{cls.__name__} is drawn under {parents[-1]}"
            assert parents[-1] in cls.__bases__, f"{cls.__name__}: {cls.__bases__}"
        parents.append(cls)
        drawn.add(cls.__name__)
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.TritonPipeError)
    }
    assert drawn == defined, defined ^ drawn


def test_client_options_are_in_its_signature() -> None:
    import inspect

    from tritonpipe.client import AsyncClient, Client

    for cls in (Client, AsyncClient):
        params = inspect.signature(cls).parameters
        assert {"token", "timeout_s", "retries", "shared_memory"} <= set(params)
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values())


def test_a_misspelled_step_gets_a_suggestion(spec: Path) -> None:
    from tritonpipe.ensembles import load_spec
    from tritonpipe.errors import SpecError

    spec.write_text(SPEC + "ensembles:\n  e:\n    steps: [doubel]\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert str(info.value) == (
        f"{spec}: ensembles.e.steps[0]: 'doubel' is not defined; did you mean 'double'?"
    )
