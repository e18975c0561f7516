"""The server's log: where it goes by default, and the excerpt quoted when the server fails
(its error lines, without the GPU noise every CPU-only start prints)."""

from __future__ import annotations

import os
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
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    starts = [i for i, line in enumerate(text) if line.startswith(START_MARKER)]
    run = [
        line
        for line in text[starts[-1] + 1 if starts else 0 :]
        if not any(h in line for h in HARMLESS)
    ]
    markers = ("terminate", "what()", "error", "Error", "failed", "Aborted", "Signal")
    errors = [line for line in run if line.startswith("E1") or any(m in line for m in markers)]
    return "\n".join((errors or run)[-lines:])
