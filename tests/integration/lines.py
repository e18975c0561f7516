"""Waiting for a subprocess's line with a real deadline."""

from __future__ import annotations

import queue
import subprocess
import threading
import time

import pytest


def wait_for_line(process: subprocess.Popen[str], prefix: str, timeout_s: float) -> list[str]:
    """Lines up to the one starting with ``prefix``; fails after ``timeout_s`` even when the
    process prints nothing (a reader thread feeds a queue read with a timeout)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            pytest.fail(f"exited before {prefix!r}:\n{''.join(seen)}")
        seen.append(line)
        if line.startswith(prefix):
            return seen
    pytest.fail(f"no {prefix!r} line within {timeout_s} s:\n{''.join(seen)}")
