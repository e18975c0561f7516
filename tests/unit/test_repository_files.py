"""What a fresh clone holds and says: comments in the examples name files and make targets that
exist, no server log is committed (a developer's tritonserver-8000.log once was), and build
counts its models in plain English."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def _targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", makefile, flags=re.MULTILINE))


def test_example_comments_name_files_and_targets_that_exist() -> None:
    targets = _targets()
    wrong = []
    for config in sorted((ROOT / "examples").rglob("*.yaml")):
        comments = "\n".join(
            line.split("#", 1)[1] for line in config.read_text().splitlines() if "#" in line
        )
        for path in re.findall(r"\bexamples/[\w./-]+\.(?:ya?ml|py|json|csv)\b", comments):
            if not (ROOT / path).exists():
                wrong.append(f"{config.relative_to(ROOT)} names {path}")
        for target in re.findall(r"\bmake ([a-z][\w-]*)", comments):
            if target not in targets:
                wrong.append(f"{config.relative_to(ROOT)} names make {target}")
    assert not wrong, wrong


def test_no_server_log_is_committed() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "*.log"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    servers = [p for p in tracked if p.rsplit("/", 1)[-1].startswith("tritonserver")]
    assert not servers, servers


def test_build_counts_one_model_in_the_singular(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tritonpipe.cli.main import app

    (tmp_path / "stages.py").write_text("def double(x):\n    return {'y': x * 2}\n")
    stage = {
        "function": "stages.py:double",
        "inputs": [{"name": "x", "dtype": "FP32", "shape": [1]}],
        "outputs": [{"name": "y", "dtype": "FP32", "shape": [1]}],
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"stages": {"double": stage}}))
    out = tmp_path / "repo"
    result = CliRunner().invoke(app, ["build", str(tmp_path / "pipeline.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote 1 model to {out} (validated)" in result.output
