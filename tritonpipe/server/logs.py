"""The server's log: where it goes by default, the excerpt quoted when the server fails (its
error lines, without the GPU noise every CPU-only start prints), and why a stop timed out."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Lines every CPU-only start prints; they explain nothing about a failure.
HARMLESS = (
    "NVML",
    "DCGM",
    "CUDA driver version is insufficient",
    "CudaDriverHelper",
    "CUDA memory pool",
    "pinned memory pool",
    "no CUDA-capable device",
)
START_MARKER = "=== tritonpipe: starting"


def state_path() -> Path:
    """Where tritonpipe keeps state such as server logs: $TRITONPIPE_STATE, else .tritonpipe/
    in the current folder."""
    return Path(os.environ.get("TRITONPIPE_STATE", ".tritonpipe"))


def default_log_path(http_port: int) -> Path:
    return state_path() / "logs" / f"tritonserver-{http_port}.log"


def state_folder() -> Path:
    """The state folder, created; it ignores itself for git (a .gitignore holding ``*``)."""
    folder = state_path()
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# tritonpipe state (server logs); never committed\n*\n")
    return folder


def log_excerpt(path: Path, lines: int = 15) -> str:
    """From the latest run in the server log: its error lines (E..., terminate, what()), else
    its last lines."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    run = [line for line in _latest_run(text) if not any(h in line for h in HARMLESS)]
    markers = ("terminate", "what()", "error", "Error", "failed", "Aborted", "Signal")
    errors = [line for line in run if line.startswith("E1") or any(m in line for m in markers)]
    return "\n".join((errors or run)[-lines:])


# Triton's lines on stop (server.cc, main.cc), e.g.
#   I1203 06:25:26.684038 11619 server.cc:345] "Timeout 1: Found 5 live models and 0 in-flight
#   non-inference requests"
#   E1203 06:25:27.685450 11619 main.cc:535] "failed to stop server: Internal - Exit timeout
#   expired. Exiting immediately."
EXPIRED = "Exit timeout expired"
_LIVE = re.compile(r"Timeout \d+: Found (\d+) live models and (\d+) in-flight non-inference")
_INFERRING = re.compile(r"Timeout \d+: Found (\d+) model versions that have in-flight inferences")
_LOADED = re.compile(r"successfully loaded '([^']+)'")
_UNLOADED = re.compile(r"successfully unloaded '([^']+)'")


def _latest_run(text: str) -> list[str]:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(START_MARKER)]
    return lines[starts[-1] + 1 :] if starts else lines


def stop_timeout(log_text: str) -> str | None:
    """Why the latest run's stop ran out of time (Triton's ``Exit timeout expired``), from its
    log: the models it was still waiting to unload (loaded, and not yet unloaded when time ran
    out), the inferences or requests still in flight; None when its stop did not time out."""
    live: set[str] = set()
    counts: tuple[int, int] | None = None
    inferring = 0
    for line in _latest_run(log_text):
        if EXPIRED in line:
            break
        if found := _LOADED.search(line):
            live.add(found[1])
        elif found := _UNLOADED.search(line):
            live.discard(found[1])
        elif found := _LIVE.search(line):
            counts = int(found[1]), int(found[2])
        elif found := _INFERRING.search(line):
            inferring = int(found[1])
    else:
        return None
    parts = []
    if counts is None:  # no model was asked to unload yet
        if inferring:
            parts.append(f"{inferring} model version(s) still running inferences")
    else:
        models, requests = counts
        if models:
            waiting = sorted(live)
            names = f" ({', '.join(waiting)})" if len(waiting) == models else ""
            parts.append(f"{models} model(s) still unloading{names}")
        if requests:
            parts.append(f"{requests} non-inference request(s) in flight")
    if not parts:
        return "the exit timeout expired before tritonserver began unloading models"
    return "the exit timeout expired with " + " and ".join(parts)
