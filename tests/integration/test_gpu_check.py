"""The GPU check's dry run on CPU: every step (build, export, serve, in-process, profile, plan,
validation, the table) on CPU instances, tiny and short, so the command a GPU machine runs
cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_gpu_check_dry_run_prints_its_table(
    trained_export: Path, heldout: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "gpu.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()
    assert "GPU check on CPU (dry run)" in table
    for check in ("convnet served / in-process", "digits_ts served", "SLO capacity predicted"):
        assert check in table
    assert table.count("p99 ms at") == 3
