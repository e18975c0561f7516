"""The excerpt quoted when tritonserver fails (this run's errors, without GPU noise), and why a
stop timed out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonpipe.server.logs import (
    START_MARKER,
    default_log_path,
    log_excerpt,
    state_folder,
    stop_timeout,
)

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


# A real run (tritonserver 2.5x from nvidia-pytriton, the committed model_repository/, SIGTERM
# with --exit-timeout-secs=2): two models unloaded in time, three did not.
LOADED = """\
I1203 06:25:17.379150 11619 model_lifecycle.cc:839] "successfully loaded 'postprocess'"
I1203 06:25:20.502964 11619 model_lifecycle.cc:839] "successfully loaded 'digits_onnx'"
I1203 06:25:20.676390 11619 model_lifecycle.cc:839] "successfully loaded 'digits'"
I1203 06:25:22.432190 11619 model_lifecycle.cc:839] "successfully loaded 'preprocess'"
I1203 06:25:26.405848 11619 model_lifecycle.cc:839] "successfully loaded 'digits_ts'"
I1203 06:25:26.406760 11619 model_lifecycle.cc:839] "successfully loaded 'digits_steps'"
"""
TIMED_OUT = """\
Signal (15) received.
I1203 06:27:06.180082 14382 server.cc:305] "Waiting for in-flight requests to complete."
I1203 06:27:06.180110 14382 server.cc:321] "Timeout 2: Found 0 model versions that have in-flight inferences"
I1203 06:27:06.180574 14382 model_lifecycle.cc:624] "successfully unloaded 'digits_steps' version 1"
I1203 06:27:06.180694 14382 server.cc:336] "All models are stopped, unloading models"
I1203 06:27:06.180705 14382 server.cc:345] "Timeout 2: Found 5 live models and 0 in-flight non-inference requests"
I1203 06:27:07.181973 14382 server.cc:345] "Timeout 1: Found 5 live models and 0 in-flight non-inference requests"
I1203 06:27:07.425254 14382 model_lifecycle.cc:624] "successfully unloaded 'postprocess' version 1"
I1203 06:27:07.431048 14382 model_lifecycle.cc:624] "successfully unloaded 'digits_onnx' version 1"
I1203 06:27:08.182162 14382 server.cc:345] "Timeout 0: Found 3 live models and 0 in-flight non-inference requests"
E1203 06:27:08.182218 14382 main.cc:535] "failed to stop server: Internal - Exit timeout expired. Exiting immediately."
I1203 06:27:08.349370 14382 model_lifecycle.cc:624] "successfully unloaded 'digits_ts' version 1"
I1203 06:27:08.486461 14382 model_lifecycle.cc:624] "successfully unloaded 'digits' version 1"
I1203 06:27:08.680586 14382 model_lifecycle.cc:624] "successfully unloaded 'preprocess' version 1"
"""
# The same repository with --exit-timeout-secs=30: every model unloaded, exit code 0.
IN_TIME = """\
Signal (15) received.
I1203 06:26:47.912200 13791 server.cc:305] "Waiting for in-flight requests to complete."
I1203 06:26:47.912239 13791 server.cc:321] "Timeout 30: Found 0 model versions that have in-flight inferences"
I1203 06:26:47.912653 13791 model_lifecycle.cc:624] "successfully unloaded 'digits_steps' version 1"
I1203 06:26:47.913244 13791 server.cc:336] "All models are stopped, unloading models"
I1203 06:26:47.913268 13791 server.cc:345] "Timeout 30: Found 5 live models and 0 in-flight non-inference requests"
I1203 06:26:49.250186 13791 model_lifecycle.cc:624] "successfully unloaded 'digits_onnx' version 1"
I1203 06:26:50.916058 13791 server.cc:345] "Timeout 27: Found 0 live models and 0 in-flight non-inference requests"
"""


def test_stop_timeout_names_the_models_still_unloading() -> None:
    text = f"{START_MARKER} this run\n{NOISE}{LOADED}{TIMED_OUT}"
    assert stop_timeout(text) == (
        "the exit timeout expired with 3 model(s) still unloading (digits, digits_ts, preprocess)"
    )
    # Only the latest run counts: an earlier run that timed out, then one that stopped in time.
    assert stop_timeout(f"{START_MARKER} a\n{LOADED}{TIMED_OUT}{START_MARKER} b\n") is None
    assert stop_timeout(f"{START_MARKER} a\n{LOADED}{IN_TIME}") is None
    assert stop_timeout("") is None


def test_stop_timeout_while_requests_are_in_flight() -> None:
    inferring = TIMED_OUT.replace("Found 0 model versions", "Found 2 model versions")
    cut = inferring.index("I1203 06:27:06.180574")  # it timed out before unloading anything
    expired = 'E1203 main.cc:535] "failed to stop server: Internal - Exit timeout expired."\n'
    assert stop_timeout(LOADED + inferring[:cut] + expired) == (
        "the exit timeout expired with 2 model version(s) still running inferences"
    )
    assert stop_timeout(LOADED + expired) == (
        "the exit timeout expired before tritonserver began unloading models"
    )
    # Names are given only when the log accounts for every live model Triton counts.
    busy = TIMED_OUT.replace("Found 3 live models and 0", "Found 4 live models and 1")
    assert stop_timeout(LOADED + busy) == (
        "the exit timeout expired with 4 model(s) still unloading and 1 non-inference "
        "request(s) in flight"
    )
