"""Shared fixtures: the digits export (built once per session) and paths."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"
SENSORS = ROOT / "examples" / "sensors"
ASSETS = Path(__file__).resolve().parent / "assets"
TRAINED_EXPORT = DIGITS / "artifacts" / "export"


def run_export(factory: str, out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonpipe.cli",
            "export",
            factory,
            "--input",
            "pixels:FP32:1,8,8",
            "--output",
            "logits",
            "--max-batch-size",
            "64",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def untrained_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/digits with a random-weight export in artifacts/export (same shapes)."""
    root = tmp_path_factory.mktemp("digits")
    for name in ("pipeline.yaml", "stages.py"):
        (root / name).write_text((DIGITS / name).read_text())
    shutil.copytree(DIGITS / "samples", root / "samples")  # the spec's warmup sample
    run_export(f"{DIGITS / 'model.py'}:untrained", root / "artifacts" / "export")
    return root


@pytest.fixture(scope="session")
def trained_export() -> Path:
    """The trained digits export (`make digits`); trained here when missing."""
    if not (TRAINED_EXPORT / "manifest.json").is_file():
        subprocess.run([sys.executable, str(DIGITS / "train.py")], check=True, capture_output=True)
        run_export(f"{DIGITS / 'model.py'}:trained", TRAINED_EXPORT)
    return TRAINED_EXPORT


ENCODER = ROOT / "examples" / "encoder" / "model.py"


@pytest.fixture(scope="session")
def encoder_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The variable-length encoder exported once per session in all three formats: compiling the
    AOTInductor package is the slow part (tens of seconds on 2 cores), so tests share it. What
    the export reported while it ran is in ``progress.txt`` beside the export folder."""
    from tritonpipe.export import export, parse_export_input, progress

    out = tmp_path_factory.mktemp("encoder") / "export"
    lines: list[str] = []
    every_s, progress.EVERY_S = progress.EVERY_S, 1.0  # a beat a second for the progress test
    try:
        export(
            f"{ENCODER}:encoder",
            [parse_export_input("tokens:INT64:-1=24")],
            out,
            formats=["onnx", "torchscript", "aoti"],
            output_names=["logits", "hidden"],
            max_batch_size=64,
            progress=lines.append,
        )
    finally:
        progress.EVERY_S = every_s
    (out.parent / "progress.txt").write_text("\n".join(lines) + "\n")  # see test_export_progress
    return out


# No test may leave files at the repository root (a perf_analyzer.csv once got committed).
_STRAYS = ("perf_analyzer.csv",)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    strays = [name for name in _STRAYS if (ROOT / name).exists()]
    if strays:
        print(f"\nerror: the tests left {strays} at the repository root {ROOT}")
        session.exitstatus = 1
