"""`make setup` and `make demo` say what they are doing (issue: ~80 s of `pip -q` in silence)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def _plan(target: str) -> str:
    """The commands `make` would run for ``target`` from scratch (nothing is run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_setup_names_its_steps_and_lets_pip_name_each_package() -> None:
    plan = _plan("setup")
    assert "==> [1/2]" in plan and "==> [2/2] tritonpipe with its dev extras" in plan
    install = next(line for line in plan.splitlines() if "-e '.[dev]'" in line)
    assert " -q" not in install  # pip prints each package it collects and installs


def test_demo_names_its_steps() -> None:
    plan = _plan("demo")
    assert "==> training the digits CNN" in plan
    assert "==> building model_repository/" in plan
