"""One line describing the machine a benchmark ran on, for its results file."""

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
