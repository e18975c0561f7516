import subprocess
import sys
from pathlib import Path

from tests.conftest import ASSETS


def tritonpipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonpipe.cli", *args], capture_output=True, text=True
    )


def test_every_command_has_help() -> None:
    for command in ("export", "build", "validate", "serve", "infer"):
        result = tritonpipe(command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_export_parity_failure_exits_nonzero(tmp_path: Path) -> None:
    result = tritonpipe(
        "export",
        f"{ASSETS / 'models.py'}:diverging",
        "-i",
        "x:FP32:3",
        "--output",
        "shifted",
        "-f",
        "onnx",
        "--exporter",
        "legacy",
        "-o",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert "onnx output 'shifted'" in result.stderr and "Traceback" not in result.stderr


def test_export_of_a_baked_length_names_input_dim_and_sizes(tmp_path: Path) -> None:
    result = tritonpipe(
        "export",
        f"{ASSETS / 'models.py'}:baked_length",
        "-i",
        "tokens:INT64:-1=24:0..50",
        "-f",
        "torchscript",
        "-o",
        str(tmp_path),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "input 'tokens' dim 1 is declared dynamic but does not really vary" in result.stderr
    assert "sizes that worked: [24]; at size 1 (batch 1)" in result.stderr


def test_export_bad_input_spec(tmp_path: Path) -> None:
    result = tritonpipe(
        "export", f"{ASSETS / 'models.py'}:nan", "-i", "x:FLOAT:3", "-o", str(tmp_path)
    )
    assert result.returncode == 1 and "unknown dtype 'FLOAT'" in result.stderr


def test_build_bad_spec_exits_nonzero(tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text("stages:\n  s:\n    function: x.py:f\n    inputs: []\n    outputs: []\n")
    result = tritonpipe("build", str(spec), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"{spec}: stages.s.inputs: List should have at least 1 item" in result.stderr
