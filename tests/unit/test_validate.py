import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tritonpipe.cli.main import app
from tritonpipe.ensembles import build_repository
from tritonpipe.errors import RepositoryError
from tritonpipe.repository import validate_repository


@pytest.fixture
def repo(untrained_digits: Path, tmp_path: Path) -> Path:
    out = tmp_path / "repo"
    build_repository(untrained_digits / "pipeline.yaml", out)
    return out


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _problems(repo: Path) -> str:
    with pytest.raises(RepositoryError) as info:
        validate_repository(repo)
    return str(info.value)


def test_valid_repository(repo: Path) -> None:
    assert len(validate_repository(repo)) == 6


def test_unknown_field_names_file_line_and_field(repo: Path) -> None:
    config = repo / "preprocess" / "config.pbtxt"
    config.write_text(config.read_text() + "max_batch_sise: 4\n")
    message = _problems(repo)
    assert str(config) in message and 'has no field named "max_batch_sise"' in message
    line = len(config.read_text().splitlines())
    assert f"{config}:{line}:" in message


def test_missing_model_file(repo: Path) -> None:
    (repo / "digits_onnx" / "1" / "model.onnx").unlink()
    (repo / "digits" / "1" / "tritonpipe_runtime.py").unlink()
    message = _problems(repo)
    assert (
        f"{repo / 'digits_onnx' / '1' / 'model.onnx'}: missing file of step 'digits_onnx'"
        in message
    )
    assert (
        f"{repo / 'digits' / '1' / 'tritonpipe_runtime.py'}: missing for model 'digits'" in message
    )


def test_plan_that_disagrees_with_config(repo: Path) -> None:
    _edit(repo / "digits" / "config.pbtxt", 'name: "labels"', 'name: "label"')
    assert "plan outputs ['labels', 'probabilities'] differ from the config's" in _problems(repo)


def test_missing_version_folder_and_config(repo: Path) -> None:
    shutil.rmtree(repo / "postprocess" / "1")
    (repo / "stray").mkdir()
    message = _problems(repo)
    assert "postprocess: no version folder" in message
    assert f"{repo / 'stray' / 'config.pbtxt'}: missing" in message


def test_preferred_batch_size_above_max(repo: Path) -> None:
    _edit(
        repo / "digits_onnx" / "config.pbtxt",
        "preferred_batch_size: [16, 32]",
        "preferred_batch_size: [16, 128]",
    )
    assert (
        "dynamic_batching.preferred_batch_size: 128 is outside 1..max_batch_size (64)"
        in _problems(repo)
    )


def test_ensemble_batch_larger_than_composing_model(repo: Path) -> None:
    _edit(repo / "digits_steps" / "config.pbtxt", "max_batch_size: 64", "max_batch_size: 128")
    message = _problems(repo)
    assert (
        "ensemble max_batch_size 128 is larger than model 'preprocess' max_batch_size 64" in message
    )


def test_ensemble_dtype_mismatch(repo: Path) -> None:
    _edit(repo / "digits_onnx" / "config.pbtxt", "TYPE_FP32", "TYPE_FP16")
    message = _problems(repo)
    assert (
        "model 'preprocess' output 'pixels' is FP32[1,8,8] but model 'digits_onnx' input 'pixels' wants FP16[1,8,8]"
        in message
    )


def test_unproduced_tensor_and_unknown_step_model(repo: Path) -> None:
    _edit(
        repo / "digits_steps" / "config.pbtxt",
        'value: "pixels"\n    }\n    output_map',
        'value: "pixelz"\n    }\n    output_map',
    )
    _edit(repo / "digits_steps" / "config.pbtxt", 'model_name: "postprocess"', 'model_name: "gone"')
    message = _problems(repo)
    assert (
        "tensor 'pixelz' for model 'digits_onnx' input 'pixels' is produced by nothing" in message
    )
    assert "model 'gone' is not in the repository" in message


def test_ensemble_output_not_produced(repo: Path) -> None:
    _edit(repo / "digits_steps" / "config.pbtxt", 'name: "labels"', 'name: "label"')
    assert (
        "tensor 'label' for ensemble 'digits_steps' output 'label' is produced by nothing"
        in _problems(repo)
    )


def test_cycle(tmp_path: Path) -> None:
    repo = tmp_path / "cyclic"
    for name in ("a", "b"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text("")
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "python"\ninput {{ name: "i" data_type: TYPE_FP32 dims: [1] }}\n'
            'output { name: "o" data_type: TYPE_FP32 dims: [1] }\n'
        )
    (repo / "e" / "1").mkdir(parents=True)
    (repo / "e" / "config.pbtxt").write_text(
        'name: "e"\nplatform: "ensemble"\n'
        'input { name: "x" data_type: TYPE_FP32 dims: [1] }\n'
        'output { name: "t1" data_type: TYPE_FP32 dims: [1] }\n'
        "ensemble_scheduling {\n"
        '  step { model_name: "a" model_version: -1 input_map { key: "i" value: "t2" } output_map { key: "o" value: "t1" } }\n'
        '  step { model_name: "b" model_version: -1 input_map { key: "i" value: "t1" } output_map { key: "o" value: "t2" } }\n'
        "}\n"
    )
    assert "ensemble 'e' steps form a cycle" in _problems(repo)


def test_cli_validate_exit_codes(repo: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(repo)])
    assert ok.exit_code == 0 and "6 models, all valid" in ok.output
    (repo / "digits_ts" / "1" / "digits_torchscript.pt").unlink()
    bad = runner.invoke(app, ["validate", str(repo)])
    assert bad.exit_code == 1
    assert "digits_torchscript.pt: missing file of step 'digits_torchscript'" in bad.output
