"""What an export tells its caller while it runs: one line per step, and a line every so often
while a long step (an AOTInductor C++ build, a parity run) is still going, so a slow export is
never silent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

Report = Callable[[str], None]
EVERY_S = 15.0  # how often a long step says it is still running

# Each format's writing step as the progress line names it.
WRITING = {
    "onnx": "exporting to ONNX",
    "torchscript": "tracing to TorchScript",
    "aoti": "compiling with AOTInductor (a C++ build; a minute or more)",
}


class Heartbeat:
    """``with Heartbeat(report, "aoti") as beat:`` reports ``aoti: still <phase> (N s)`` every
    ``every_s`` until the block ends; ``beat.phase`` names what is running now."""

    def __init__(
        self, report: Report, what: str, phase: str, *, every_s: float | None = None
    ) -> None:
        self.report, self.what, self.phase = report, what, phase
        self.every_s = EVERY_S if every_s is None else every_s
        self._done = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="export-progress")

    def _beat(self) -> None:
        while not self._done.wait(self.every_s):
            elapsed = time.monotonic() - self._start
            self.report(f"{self.what}: still {self.phase} ({elapsed:.0f} s)")

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()
