"""`build` refuses ensembles whose tensors only connect by accident (issue: a misspelled stage
output silently became an ensemble input, and an unread model output made Triton refuse the
ensemble), naming ensemble, step and tensor."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonpipe.ensembles import build_repository
from tritonpipe.errors import SpecError

STAGES = """
import numpy as np


def prepare(raw):
    return {"num": raw * 2.0}


def score(num):
    return {"score": num.sum(axis=1, keepdims=True), "embedding": num}
"""

SPEC = """
stages:
  tab_pre:
    function: stages.py:prepare
    inputs: [{name: raw, dtype: FP32, shape: [4]}]
    outputs: [{name: PRE_OUT, dtype: FP32, shape: [4]}]
  tab_model:
    function: stages.py:score
    inputs: [{name: num, dtype: FP32, shape: [4]}]
    outputs:
      - {name: score, dtype: FP32, shape: [1]}
      - {name: embedding, dtype: FP32, shape: [4]}
ensembles:
  tabular:
    steps: [tab_pre, tab_model]
"""


def _spec(tmp_path: Path, pre_out: str = "num", extra: str = "") -> Path:
    (tmp_path / "stages.py").write_text(STAGES)
    path = tmp_path / "pipeline.yaml"
    path.write_text(SPEC.replace("PRE_OUT", pre_out) + extra)
    return path


def test_misspelled_stage_output_names_ensemble_step_tensor_and_guess(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        build_repository(_spec(tmp_path, pre_out="numz"), tmp_path / "repo")
    message = str(info.value)
    assert message.startswith("ensembles.tabular.steps[1]: model 'tab_model' input 'num'")
    assert "reads tensor 'num', which no earlier step writes" in message
    assert (
        "did you mean 'numz' (written by step 0 'tab_pre')? Map it with `inputs: {num: numz}`"
        in message
    )
    assert not (tmp_path / "repo").exists()


def test_unread_model_output_says_add_it_to_outputs(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text() + "    outputs: [score]\n")
    with pytest.raises(SpecError) as info:
        build_repository(spec, tmp_path / "repo")
    message = str(info.value)
    assert "ensembles.tabular: 'embedding' (written by step 1 'tab_model')" in message
    assert "add it to the ensemble's `outputs:` (now ['score'])" in message


def test_default_outputs_and_declared_inputs_build(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text() + "    inputs: [raw]\n    outputs: [embedding, score]\n")
    models = build_repository(spec, tmp_path / "repo")
    config = models["tabular"].config
    assert [t.name for t in config.input] == ["raw"]
    assert [t.name for t in config.output] == ["embedding", "score"]


def test_declaring_the_misspelled_input_still_leaves_the_output_unread(tmp_path: Path) -> None:
    spec = _spec(tmp_path, pre_out="numz")
    spec.write_text(spec.read_text() + "    inputs: [raw, num]\n")
    with pytest.raises(SpecError, match=r"'numz' \(written by step 0 'tab_pre'\) is read by no"):
        build_repository(spec, tmp_path / "repo")


def test_later_step_reads_a_declared_input(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    text = spec.read_text().replace(
        "steps: [tab_pre, tab_model]",
        "steps: [tab_pre, tab_model, {model: tab_model, inputs: {num: raw2}, "
        "outputs: {score: score2, embedding: embedding2}}]",
    )
    spec.write_text(
        text + "    inputs: [raw, raw2]\n    outputs: [score, embedding, score2, embedding2]\n"
    )
    config = build_repository(spec, tmp_path / "repo")["tabular"].config
    assert [t.name for t in config.input] == ["raw", "raw2"]


def test_declared_input_written_by_a_step(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text() + "    inputs: [raw, num]\n")
    with pytest.raises(SpecError, match=r"inputs: \['num'\] is also written by step 0 'tab_pre'"):
        build_repository(spec, tmp_path / "repo")


def test_declared_input_no_step_reads(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text() + "    inputs: [raw, rwa2]\n")
    with pytest.raises(SpecError, match=r"ensembles.tabular.inputs: no step reads \['rwa2'\]"):
        build_repository(spec, tmp_path / "repo")


def test_tensor_written_twice(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    text = spec.read_text().replace(
        "steps: [tab_pre, tab_model]",
        "steps: [tab_pre, tab_model, {model: tab_model, outputs: {embedding: e2}}]",
    )
    spec.write_text(text)
    with pytest.raises(SpecError, match=r"steps\[2\]: model 'tab_model' writes tensor 'score'"):
        build_repository(spec, tmp_path / "repo")


def test_wiring_messages_in_full() -> None:
    from tritonpipe.ensembles.wiring import (
        EnsembleTensors,
        check_declared_inputs,
        check_unread_outputs,
    )
    from tritonpipe.tensors import TensorSpec

    with pytest.raises(SpecError) as info:
        check_declared_inputs("e", ["x", "y"], {"x", "y"}, {"y": "step 0 'm'"})
    assert str(info.value) == (
        "ensembles.e.inputs: ['y'] is also written by step 0 'm'; a tensor is either sent by "
        "clients or written by a step"
    )
    with pytest.raises(SpecError) as info:
        check_unread_outputs(
            "e", {"a": "step 0 'm'", "b": "step 1 'n'", "c": "step 1 'n'"}, {"c"}, ["z"]
        )
    assert str(info.value) == (
        "ensembles.e: 'a' (written by step 0 'm'), 'b' (written by step 1 'n') is read by no "
        "later step and is not returned; add it to the ensemble's `outputs:` (now ['z']), or map "
        "the model output to a tensor a later step reads (Triton refuses unused tensors)"
    )
    tensors = EnsembleTensors("e", None)
    tensors.step_reads(0, "m", TensorSpec(name="x", dtype="FP32", shape=(4,)), "x")
    tensors.step_writes(0, "m", TensorSpec(name="y", dtype="FP32", shape=(4,)), "y")
    with pytest.raises(SpecError) as info:
        tensors.finish(["y", "q", "r"])
    assert str(info.value) == "ensembles.e.outputs: no step produces ['q', 'r']"
