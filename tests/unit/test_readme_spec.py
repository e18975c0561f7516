"""The README teaches the spec format: its example spec is a valid spec, with a stage
definition, a step's maps and a stage parameter, and it says how export binds --inputs."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT
from tritonpipe.ensembles import load_spec


def _example_spec() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    return next(b for b in blocks if b.startswith("stages:\n  scale:"))


def test_the_readme_spec_is_a_valid_spec(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(_example_spec())
    spec = load_spec(path)
    stage = spec.stages["scale"]
    assert stage.function == "stages.py:scale"
    assert [(t.name, t.dtype, list(t.shape)) for t in stage.inputs] == [("score", "FP32", [1])]
    assert stage.parameters == {"factor": 3.0}
    step = spec.ensembles["scored"].step_refs()[1]
    assert step.inputs == {"score": "score"} and step.outputs == {"scaled": "scaled"}


def test_the_readme_says_export_binds_inputs_by_position() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`--input`s to `forward()`'s arguments **by position**" in readme
