"""What a benchmark records about the machine: one line describing it for the results file, and
the CPU time a server (with its child processes) has used."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe_machine() -> str:
    """CPU model, cores, load average, Python and the Triton build used."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores visible, load average {load} at the start, Python "
        f"{platform.python_version()}, Triton 2.51.0 (nvidia-pytriton 0.7.0, CPU only); load "
        "tools and servers share the machine"
    )


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its living descendants
    (tritonserver and its Python-backend stubs)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # ended between the listing and the read
            continue
        total += times.user + times.system
    return total
