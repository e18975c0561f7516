"""Reading a subprocess's output with real deadlines, from one reader thread.

The reader owns the pipe for the whole life of the process: waiting for a line and then calling
``communicate()`` would race two readers for the same pipe, and the one that lost would miss lines.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time

import pytest


class Lines:
    """Every line ``process`` prints, fed to a queue by one reader thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.process = process
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._done = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout_s: float) -> list[str]:
        """Lines up to the one starting with ``prefix``; fails after ``timeout_s`` even when
        the process prints nothing."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._done = True
                pytest.fail(f"exited before {prefix!r}:\n{''.join(self.seen)}")
            self.seen.append(line)
            if line.startswith(prefix):
                return self.seen
        pytest.fail(f"no {prefix!r} line within {timeout_s} s:\n{''.join(self.seen)}")

    def finish(self, timeout_s: float) -> str:
        """Wait for the process to exit and its output to end; everything it printed."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"still running after {timeout_s} s (killed):\n{''.join(self.seen)}")
        deadline = time.monotonic() + timeout_s
        while not self._done:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"output did not end within {timeout_s} s:\n{''.join(self.seen)}")
            if line is None:
                self._done = True
            else:
                self.seen.append(line)
        return "".join(self.seen)
