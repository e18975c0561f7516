import filecmp
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tritonpipe.ensembles import build_repository, load_spec
from tritonpipe.ensembles.plan import served_models
from tritonpipe.errors import SpecError
from tritonpipe.repository.config import parse_pbtxt

WEIGHTS = {".onnx", ".pt"}


def _shift_weights(export: Path) -> None:
    """The same model with other weights: every float weight of the ONNX and TorchScript files
    scaled, in place."""
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(str(export / "model.onnx"))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f":
            init.CopyFrom(numpy_helper.from_array(array * 1.5 + 0.01, init.name))
    onnx.save(model, str(export / "model.onnx"))
    scripted = torch.jit.load(str(export / "model.pt"))
    with torch.no_grad():
        for parameter in scripted.parameters():
            parameter.mul_(1.5).add_(0.01)
    torch.jit.save(scripted, str(export / "model.pt"))


def _from_weights(spec_folder: Path, built: Path, tmp_path: Path) -> set[str]:
    """The files of ``built`` that follow the model's weights: those another build of the same
    spec with other weights writes differently (warmup inputs a later step gets are the earlier
    steps' outputs on the sample; the committed repository holds the trained model's)."""
    other = tmp_path / "other_weights"
    shutil.copytree(spec_folder, other)
    _shift_weights(other / "artifacts" / "export")
    build_repository(other / "pipeline.yaml", tmp_path / "other_repo")
    return {
        name
        for name in _files(built)
        if not filecmp.cmp(built / name, tmp_path / "other_repo" / name, shallow=False)
    }


def _files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.suffix not in WEIGHTS and "__pycache__" not in p.parts
    )


def test_committed_model_repository_is_what_build_writes(
    untrained_digits: Path, tmp_path: Path
) -> None:
    out = tmp_path / "repo"
    build_repository(untrained_digits / "pipeline.yaml", out)
    committed = ROOT / "model_repository"
    assert _files(out) == _files(committed), "run `make repository` and commit model_repository/"
    from_weights = _from_weights(untrained_digits, out, tmp_path)
    # Only warmup data follows the weights (here postprocess's logits); configs and plans do not.
    assert from_weights and all("/warmup/" in name for name in from_weights), from_weights
    for name in sorted(set(_files(out)) - from_weights):
        assert filecmp.cmp(out / name, committed / name, shallow=False), (
            f"model_repository/{name} differs from what `tritonpipe build` writes today"
        )


def test_build_fuses_each_ensemble_into_one_model(untrained_digits: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    models = build_repository(untrained_digits / "pipeline.yaml", repo)
    # digits and digits_ts fuse whole; digits_steps (fuse: none) needs its three models alone.
    assert set(models) == {
        "digits",
        "digits_ts",
        "digits_steps",
        "preprocess",
        "digits_onnx",
        "postprocess",
    }
    fused = models["digits"].config
    assert fused.backend == "python" and fused.max_batch_size == 64
    assert fused.parameters["tritonpipe.steps"].string_value == "preprocess,digits_onnx,postprocess"
    assert [t.name for t in fused.input] == ["image"]
    assert [t.name for t in fused.output] == ["labels", "probabilities"]
    # Derived serving: the most instances any step asks for, the smallest queue delay.
    assert [g.count for g in fused.instance_group] == [2]
    assert fused.dynamic_batching.max_queue_delay_microseconds == 0
    plan = json.loads((repo / "digits" / "1" / "plan.json").read_text())
    assert [(s["name"], s["kind"], s["file"]) for s in plan["steps"]] == [
        ("preprocess", "stage", "stages.py"),
        ("digits_onnx", "onnx", "digits_onnx.onnx"),
        ("postprocess", "stage", "stages.py"),
    ]
    assert plan["steps"][2]["kwargs"] == {"k": 3}
    for name in ("model.py", "tritonpipe_runtime.py", "stages.py", "digits_onnx.onnx"):
        assert (repo / "digits" / "1" / name).is_file(), name  # self-contained
    assert (repo / "digits_ts" / "1" / "digits_torchscript.pt").is_file()
    assert not (repo / "digits_torchscript").exists()  # only ever run fused


@pytest.mark.parametrize("fuse", [None, "none"])
def test_served_models_names_what_build_writes(
    untrained_digits: Path, tmp_path: Path, fuse: str | None
) -> None:
    spec = untrained_digits / "pipeline.yaml"
    models = build_repository(spec, tmp_path / "repo", fuse=fuse)
    names = served_models(load_spec(spec), fuse=fuse)
    assert sorted(names) == sorted(models)
    ensembles = [n for n in names if models[n].is_ensemble]
    assert names[-len(ensembles) :] == ensembles  # load order: ensembles last


def test_fuse_none_writes_one_model_per_step(untrained_digits: Path, tmp_path: Path) -> None:
    models = build_repository(untrained_digits / "pipeline.yaml", tmp_path / "repo", fuse="none")
    assert {n for n, m in models.items() if m.is_ensemble} == {
        "digits",
        "digits_ts",
        "digits_steps",
    }
    ensemble = models["digits"].config
    assert ensemble.max_batch_size == 64
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["preprocess", "digits_onnx", "postprocess"]
    assert dict(steps[1].input_map) == {"pixels": "pixels"}
    assert models["preprocess"].config.parameters["tritonpipe.steps"].string_value == "preprocess"
    assert (tmp_path / "repo" / "digits_torchscript" / "1" / "model.pt").is_file()


def test_explicit_fuse_groups(untrained_digits: Path, tmp_path: Path) -> None:
    spec = _spec(
        untrained_digits,
        tmp_path,
        "    steps: [preprocess, digits_onnx, postprocess]\n    fuse: none",
        "    steps: [preprocess, digits_onnx, postprocess]\n    fuse: [[preprocess, digits_onnx]]",
    )
    models = build_repository(spec, tmp_path / "repo")
    steps = models["digits_steps"].config.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["digits_steps_preprocess_digits_onnx", "postprocess"]
    part = models["digits_steps_preprocess_digits_onnx"].config
    assert [t.name for t in part.input] == ["image"] and [t.name for t in part.output] == ["logits"]


@pytest.mark.parametrize(
    ("fuse", "message"),
    [
        ("[[preprocess, postprocess]]", "are not adjacent steps in order"),
        ("[[preprocess, nope]]", "\\['nope'\\] are not steps of ensemble 'digits_steps'"),
    ],
)
def test_bad_fuse_groups(untrained_digits: Path, tmp_path: Path, fuse: str, message: str) -> None:
    spec = _spec(untrained_digits, tmp_path, "    fuse: none", f"    fuse: {fuse}")
    with pytest.raises(SpecError, match=f"ensembles.digits_steps.fuse\\[0\\]: .*{message}"):
        build_repository(spec, tmp_path / "repo")


def test_native_runtime_configs(untrained_digits: Path, tmp_path: Path) -> None:
    models = build_repository(
        untrained_digits / "pipeline.yaml", tmp_path / "repo", runtime="native"
    )
    assert models["digits_onnx"].config.platform == "onnxruntime_onnx"
    torchscript = models["digits_torchscript"].config
    assert torchscript.platform == "pytorch_libtorch"
    assert [t.name for t in torchscript.input] == ["pixels__0"]
    # Native models break fusion: the stages around them stay separate steps.
    step = models["digits_ts"].config.ensemble_scheduling.step
    assert [s.model_name for s in step] == ["preprocess", "digits_torchscript", "postprocess"]
    assert dict(step[1].input_map) == {"pixels__0": "pixels"}
    assert not (tmp_path / "repo" / "digits_onnx" / "1" / "model.py").exists()


def _spec(untrained_digits: Path, tmp_path: Path, old: str, new: str) -> Path:
    for name in ("stages.py",):
        shutil.copy(untrained_digits / name, tmp_path / name)
    shutil.copytree(untrained_digits / "artifacts", tmp_path / "artifacts", dirs_exist_ok=True)
    shutil.copytree(untrained_digits / "samples", tmp_path / "samples", dirs_exist_ok=True)
    text = (untrained_digits / "pipeline.yaml").read_text()
    assert old in text
    (tmp_path / "pipeline.yaml").write_text(text.replace(old, new))
    return tmp_path / "pipeline.yaml"


def test_edge_with_mismatched_shape_names_both_ends(untrained_digits: Path, tmp_path: Path) -> None:
    spec = _spec(untrained_digits, tmp_path, "shape: [1, 8, 8]", "shape: [3, 8, 8]")
    with pytest.raises(SpecError) as info:
        build_repository(spec, tmp_path / "repo")
    # Checked at build time, fused or not: no ensemble config carries the edge when fused.
    assert str(info.value) == (
        "ensembles.digits.steps[1] (tensor 'pixels'): stage 'preprocess' output 'pixels' is "
        "FP32[3,8,8] but model 'digits_onnx' input 'pixels' wants FP32[1,8,8]"
    )
    assert not (tmp_path / "repo").exists()  # nothing written on failure


def test_edge_with_mismatched_dtype(untrained_digits: Path, tmp_path: Path) -> None:
    spec = _spec(
        untrained_digits, tmp_path, "{name: logits, dtype: FP32", "{name: logits, dtype: FP16"
    )
    with pytest.raises(
        SpecError,
        match="model 'digits_onnx' output 'logits' is FP32\\[10\\] but stage 'postprocess' "
        "input 'logits' wants FP16\\[10\\]",
    ):
        build_repository(spec, tmp_path / "repo")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "max_batch_size: 64\n    dynamic_batching: {max_queue_delay_microseconds: 500, preferred_batch_size: [16, 32]}",
            "max_batch_size: 8\n    dynamic_batching: {max_queue_delay_microseconds: 500, preferred_batch_size: [16, 32]}",
            "models.digits_onnx: dynamic_batching.preferred_batch_size 16 is outside 1..max_batch_size \\(8\\)",
        ),
        (
            "format: onnx",
            "format: tflite",
            "models.digits_onnx.format: Input should be 'onnx', 'torchscript' or 'aoti'",
        ),
        (
            "max_queue_delay_microseconds: 0}",
            "max_queue_delay_microseconds: -1}",
            "stages.preprocess.dynamic_batching.max_queue_delay_microseconds: Input should be greater than or equal to 0",
        ),
        (
            "function: stages.py:preprocess",
            "function: stages.py:nothing",
            "has no function 'nothing'",
        ),
        (
            "function: stages.py:preprocess",
            "fn: stages.py:preprocess",
            "stages.preprocess.fn: Extra inputs are not permitted",
        ),
        (
            "steps: [preprocess, digits_onnx, postprocess]",
            "steps: [preprocess, digits_nope, postprocess]",
            "ensembles.digits.steps\\[1\\]: 'digits_nope' is not defined",
        ),
        ("parameters: {k: 3}", "parameters: {top: 3}", "takes no argument 'top'"),
        (
            "max_batch_size: 64\n    dynamic_batching: {max_queue_delay_microseconds: 500, preferred_batch_size: [16, 32]}",
            "max_batch_size: 128\n    dynamic_batching: {max_queue_delay_microseconds: 500, preferred_batch_size: [16, 32]}",
            "models.digits_onnx.max_batch_size: 128 is larger than the batch size its export was checked at \\(64\\)",
        ),
    ],
)
def test_bad_spec_fields(
    untrained_digits: Path, tmp_path: Path, old: str, new: str, message: str
) -> None:
    spec = _spec(untrained_digits, tmp_path, old, new)
    with pytest.raises(SpecError, match=message) as info:
        build_repository(spec, tmp_path / "repo")
    if "models.digits_onnx: " in message or "Input should" in message or "Extra inputs" in message:
        assert str(spec) in str(info.value)
    # pydantic's own prefixes say nothing to the user.
    assert "Value error" not in str(info.value) and "(top level)" not in str(info.value)


def test_spec_that_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("stages: [unclosed")
    with pytest.raises(SpecError, match=f"{path}: not valid YAML"):
        load_spec(path)


def test_build_refuses_folder_with_other_files(untrained_digits: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SpecError, match="not model folders"):
        build_repository(untrained_digits / "pipeline.yaml", tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_generated_configs_parse(untrained_digits: Path, tmp_path: Path) -> None:
    build_repository(untrained_digits / "pipeline.yaml", tmp_path / "repo")
    for config in (tmp_path / "repo").glob("*/config.pbtxt"):
        assert parse_pbtxt(config.read_text()).name == config.parent.name
