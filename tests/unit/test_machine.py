"""tree_cpu_s: a server's CPU time includes its living children's (the Python-backend stubs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tritonpipe.perf.machine import tree_cpu_s

BURN = """
import sys, time
start = time.process_time()
while time.process_time() - start < 0.4:
    pass
print("burnt", flush=True)
sys.stdin.read()  # stay alive until the test closes stdin
"""


def test_tree_cpu_counts_the_children_still_running() -> None:
    own = time.process_time()
    child = subprocess.Popen(
        [sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "burnt\n"
        # This process's own CPU plus at least the child's 0.4 s of burning.
        assert tree_cpu_s(os.getpid()) >= own + 0.35
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
