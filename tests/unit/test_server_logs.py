"""The excerpt quoted when tritonserver fails: this run's errors, without GPU noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonpipe.server.logs import START_MARKER, default_log_path, log_excerpt, state_folder

NOISE = """\
Error: Failed to initialize NVML
W1122 16:23:30.971716 1 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory, pinned memory pool will not be available: CUDA driver version is insufficient for CUDA runtime version"
I1122 16:23:30.971785 1 cuda_memory_manager.cc:117] "CUDA memory pool disabled"
E1122 16:23:30.971859 1 server.cc:241] "CudaDriverHelper has not been initialized."
W1122 16:23:36.771822 1 metrics.cc:798] "DCGM unable to start: DCGM initialization error"
"""


def test_excerpt_quotes_this_runs_errors_without_gpu_noise(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(
        f'{START_MARKER} old run\nE1122 old.cc:1] "an old error"\n'
        f"{START_MARKER} this run\n{NOISE}"
        "E1122 main.cc:257] \"failed to start HTTP service: Socket '127.0.0.1:8000' already in use\"\n"
    )
    excerpt = log_excerpt(log)
    assert excerpt.splitlines() == [
        "E1122 main.cc:257] \"failed to start HTTP service: Socket '127.0.0.1:8000' already in use\""
    ]


def test_default_log_goes_to_a_state_folder_git_ignores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRITONPIPE_STATE", raising=False)
    assert default_log_path(8000) == Path(".tritonpipe/logs/tritonserver-8000.log")
    folder = state_folder()
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    monkeypatch.setenv("TRITONPIPE_STATE", str(tmp_path / "elsewhere"))
    assert default_log_path(1) == tmp_path / "elsewhere" / "logs" / "tritonserver-1.log"
