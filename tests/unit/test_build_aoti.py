"""Building an aoti scoring model: the Python runtime serves it, the native one cannot."""

import json
from pathlib import Path

import pytest
import yaml

from tritonpipe.ensembles import build_repository
from tritonpipe.errors import SpecError


def _spec(tmp_path: Path, export: Path, runtime: str) -> Path:
    model = {"export": str(export), "format": "aoti", "runtime": runtime, "max_batch_size": 8}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"models": {"encoder": model}}))
    return path


def test_aoti_model_builds_for_the_python_runtime(encoder_export: Path, tmp_path: Path) -> None:
    models = build_repository(_spec(tmp_path, encoder_export, "python"), tmp_path / "repo")
    config = models["encoder"].config
    assert config.backend == "python"
    assert config.parameters["tritonpipe.steps"].string_value == "encoder"
    plan = json.loads((tmp_path / "repo" / "encoder" / "1" / "plan.json").read_text())
    assert plan["steps"][0]["kind"] == "aoti" and plan["steps"][0]["file"] == "model.pt2"
    assert (tmp_path / "repo" / "encoder" / "1" / "model.pt2").is_file()
    assert [list(t.dims) for t in config.output] == [[5], [-1, 32]]


def test_native_runtime_refuses_aoti(encoder_export: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        build_repository(_spec(tmp_path, encoder_export, "native"), tmp_path / "repo")
    assert str(info.value) == (
        "models.encoder.runtime: native has no Triton platform for format 'aoti' "
        "(it serves ['onnx', 'torchscript']); use runtime: python"
    )
    assert not (tmp_path / "repo").exists()
