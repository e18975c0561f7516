"""Spec fields of issue 10: registry models, prediction-log flags; build-time checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tritonpipe.ensembles import build_repository, load_spec
from tritonpipe.errors import RegistryError, SpecError
from tritonpipe.registry import parse_uri
from tritonpipe.repository.config import parse_pbtxt


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_model_takes_export_or_registry_not_both(tmp_path: Path) -> None:
    both = {"models": {"m": {"export": "x", "registry": "models:/m/1", "format": "onnx"}}}
    with pytest.raises(SpecError, match="models.m: .*exactly one of export"):
        load_spec(write(tmp_path, both))
    neither = {"models": {"m": {"format": "onnx"}}}
    with pytest.raises(SpecError, match="exactly one of export"):
        load_spec(write(tmp_path, neither))


def test_registry_uris() -> None:
    assert parse_uri("models:/fraud/3") == ("fraud", "3", None)
    assert parse_uri("models:/fraud@champion") == ("fraud", None, "champion")
    with pytest.raises(RegistryError, match="expected 'models:/<name>/<version>'"):
        parse_uri("runs:/abc/model")


def test_a_missing_registry_version_is_a_spec_error(tmp_path: Path) -> None:
    spec = {
        "registry_uri": "sqlite:///reg.db",
        "models": {"m": {"registry": "models:/nothing/1", "format": "onnx"}},
    }
    with pytest.raises(SpecError, match="models.m.registry: models:/nothing/1 in sqlite:///"):
        build_repository(write(tmp_path, spec), tmp_path / "repo")


def digits_spec(untrained_digits: Path) -> dict:
    spec = yaml.safe_load((untrained_digits / "pipeline.yaml").read_text())
    spec["ensembles"]["digits"]["log"] = {"sink": {"type": "parquet", "path": "logs/digits"}}
    return spec


def test_digits_logs_with_a_flag_in_its_spec(untrained_digits: Path, tmp_path: Path) -> None:
    spec = digits_spec(untrained_digits)
    spec["ensembles"]["digits"]["log"]["features"] = "pixels"  # a tensor inside the fused model
    path = untrained_digits / "pipeline_logged.yaml"
    path.write_text(yaml.safe_dump(spec))
    build_repository(path, tmp_path / "repo")
    # The fused model answering `digits` logs; the other ensembles' models do not.
    config = parse_pbtxt((tmp_path / "repo" / "digits" / "config.pbtxt").read_text())
    predlog = json.loads(config.parameters["tritonpipe.predlog"].string_value)
    assert predlog["pipeline"] == "digits" and predlog["model"] == "digits_onnx"
    assert predlog["model_version"].startswith("sha256-")
    assert predlog["sink"] == {"type": "parquet", "path": "logs/digits"}
    assert predlog["features"] == "pixels"
    for other in ("digits_ts", "postprocess"):
        text = (tmp_path / "repo" / other / "config.pbtxt").read_text()
        assert "tritonpipe.predlog" not in text


def test_logging_a_shared_last_step_is_refused(untrained_digits: Path, tmp_path: Path) -> None:
    path = untrained_digits / "pipeline_shared.yaml"
    path.write_text(yaml.safe_dump(digits_spec(untrained_digits)))
    # Unfused, all three ensembles end in the one `postprocess` model.
    with pytest.raises(
        SpecError,
        match="ensembles.digits.log: its last step 'postprocess' also runs in "
        "\\['digits_steps', 'digits_ts'\\]",
    ):
        build_repository(path, tmp_path / "repo", fuse="none")


def test_logged_inputs_must_reach_the_last_step(untrained_digits: Path, tmp_path: Path) -> None:
    spec = digits_spec(untrained_digits)
    spec["ensembles"] = {"digits": spec["ensembles"]["digits"] | {"fuse": "none"}}
    spec["ensembles"]["digits"]["log"]["features"] = "pixels"
    path = untrained_digits / "pipeline_pixels.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(
        SpecError, match="the last step 'postprocess' has no input \\['pixels'\\] to log"
    ):
        build_repository(path, tmp_path / "repo")


def test_new_packages_export_their_api_and_cli_stays_light() -> None:
    import subprocess
    import sys

    import tritonpipe.features
    import tritonpipe.predlog
    import tritonpipe.registry

    for module in (tritonpipe.features, tritonpipe.predlog, tritonpipe.registry):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    code = (
        "import sys, tritonpipe.cli.main, tritonpipe.ensembles, tritonpipe.predlog; "
        "print(','.join(m for m in ('feast', 'mlflow', 'pandas', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
