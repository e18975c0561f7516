"""An export is never silent for long: a line per step, and while a long step runs (the
AOTInductor C++ build above all) a line every few seconds saying it still is."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from tritonpipe.export.progress import Heartbeat


def test_a_heartbeat_reports_while_its_step_runs_and_stops_after() -> None:
    lines: list[str] = []
    beat_seen = threading.Event()

    def report(line: str) -> None:
        lines.append(line)
        beat_seen.set()

    with Heartbeat(report, "aoti", "compiling", every_s=0.01) as beat:
        assert beat_seen.wait(30), "no line while the step ran"
        beat.phase = "checking parity"
        beat_seen.clear()
        assert beat_seen.wait(30)
    after = len(lines)
    assert re.fullmatch(r"aoti: still compiling \(\d+ s\)", lines[0])
    assert lines[-1].startswith("aoti: still checking parity (")
    beat_seen.clear()
    assert not beat_seen.wait(0.1) and len(lines) == after  # stopped with its step


def test_the_encoder_export_reports_each_step_and_beats_through_the_aoti_build(
    encoder_export: Path,
) -> None:
    lines = (encoder_export.parent / "progress.txt").read_text().splitlines()
    steps = [line for line in lines if ": still " not in line]
    assert steps[:2] == [
        "capturing the model with torch.export",
        "running the eager model at 9 input shapes",
    ]
    for fmt, writing in [
        ("onnx", "exporting to ONNX"),
        ("torchscript", "tracing to TorchScript"),
        ("aoti", "compiling with AOTInductor (a C++ build; a minute or more)"),
    ]:
        mine = [line for line in steps if line.startswith(f"{fmt}: ")]
        assert mine[0] == f"{fmt}: {writing}", mine
        assert re.fullmatch(
            rf"{fmt}: written in \d+\.\d s; checking parity at 9 input shapes", mine[1]
        )
        assert re.fullmatch(rf"{fmt}: done in \d+\.\d s", mine[2]) and len(mine) == 3
    # The build takes tens of seconds; the test fixture beats every second.
    start = lines.index("aoti: compiling with AOTInductor (a C++ build; a minute or more)")
    written = next(i for i, line in enumerate(lines) if line.startswith("aoti: written in"))
    beats = lines[start + 1 : written]
    assert beats and all(
        re.fullmatch(r"aoti: still compiling with AOTInductor \(\d+ s\)", b) for b in beats
    )


def test_the_parity_summary_names_each_dynamic_dims_sizes(encoder_export: Path) -> None:
    from tritonpipe.cli.main import tried_shapes
    from tritonpipe.export import Manifest

    summary = tried_shapes(Manifest.read(encoder_export))
    assert re.fullmatch(r"batch 1, 7, 64; tokens dim 1 at 1, 24, \d+", summary), summary
