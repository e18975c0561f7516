"""Drive Debian's ``wrk`` (one C thread, N keep-alive connections, each with one request in
flight) with a fixed POST body, and read its throughput and latency percentiles."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tritonpipe.errors import PerfError

_SCRIPT = """\
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
"""
_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


@dataclass(frozen=True, kw_only=True)
class WrkResult:
    throughput: float  # requests/s
    p50_us: float
    p99_us: float
    requests: int
    errors: int  # non-2xx answers and socket errors


def _micros(text: str) -> float:
    value = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if value is None:
        raise PerfError(f"wrk printed a latency it cannot read: {text!r}")
    return float(value[1]) * _UNITS[value[2]]


def parse(output: str) -> WrkResult:
    """Read ``wrk --latency`` output."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    done = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rate and done and p50 and p99):
        raise PerfError(f"wrk output without throughput or percentiles:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.findall(r"(connect|read|write|timeout) (\d+)", output)
    return WrkResult(
        throughput=float(rate[1]),
        p50_us=_micros(p50[1]),
        p99_us=_micros(p99[1]),
        requests=int(done[1]),
        errors=(int(errors[1]) if errors else 0) + sum(int(n) for _, n in sockets),
    )


def run_wrk(
    url: str, body: bytes, *, connections: int, seconds: float, headers: dict[str, str]
) -> WrkResult:
    """POST ``body`` to ``url`` over ``connections`` connections for ``seconds``."""
    binary = shutil.which("wrk")
    if binary is None:
        raise PerfError("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body").write_bytes(body)
        (Path(tmp) / "post.lua").write_text(_SCRIPT)
        command = [
            binary,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            "10s",
        ]
        for key, value in headers.items():
            command += ["-H", f"{key}: {value}"]
        command += ["-s", str(Path(tmp) / "post.lua"), url]
        env = {**os.environ, "WRK_BODY": str(Path(tmp) / "body")}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise PerfError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return parse(done.stdout)
