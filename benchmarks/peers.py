"""The serving benchmark's peers: servers users write or deploy instead of Triton, each running
the digits steps (the same stage functions and ONNX file) on the same number of workers.

- FastAPI + onnxruntime (uvicorn, one worker per core; ``benchmarks/fastapi_baseline.py``);
- BentoML with adaptive batching (``benchmarks/bentoml_peer.py``, one worker per core);
- Ray Serve with ``@serve.batch`` (``benchmarks/ray_peer.py``, one replica per core).

Each starts as a process tree whose CPU time (``cpu_seconds``) is what that side used. A peer
that cannot be imported or started is reported with the reason instead of figures.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
BOUNDARY = "tritonpipe-bench"


@dataclass
class Peer:
    """One server under load: where to POST what, and the root of its process tree."""

    label: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(self.process.pid).children(recursive=True):
                    child.kill()
                self.process.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every process below it, now."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def multipart(png: bytes) -> tuple[bytes, dict[str, str]]:
    """The PNG as BentoML's file input takes it: one ``images`` part of a multipart form."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; '
        'filename="digit.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    body = head + png + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _env(onnx: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TRITONPIPE_STAGES": str(DIGITS / "stages.py"),
        "TRITONPIPE_ONNX": str(onnx),
        "TRITONPIPE_WORKERS": str(os.cpu_count() or 1),
        "PYTHONPATH": str(ROOT),
    }


def _wait(peer: Peer, seconds: float) -> Peer:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if peer.process is not None and peer.process.poll() is not None:
            raise RuntimeError(f"{peer.label} exited with {peer.process.returncode} at start")
        try:
            request = urllib.request.Request(peer.url, data=peer.body, headers=peer.headers)
            urllib.request.urlopen(request, timeout=5).read()
            return peer
        except OSError:
            time.sleep(0.5)
    peer.stop()
    raise RuntimeError(f"{peer.label} did not answer within {seconds:.0f} s")


def start(label: str, port: int, onnx: Path, png: bytes, log: Path) -> Peer:
    """Start peer ``label`` (fastapi, bentoml, ray) on ``port``; raises RuntimeError saying why
    it cannot run."""
    module = {"fastapi": "uvicorn", "bentoml": "bentoml", "ray": "ray.serve"}[label]
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise RuntimeError(
            f"{module} is not installed (pip install -c constraints.txt -e '.[bench-peers]')"
        )
    workers = str(os.cpu_count() or 1)
    env = _env(onnx)
    url = f"http://127.0.0.1:{port}/predict"
    body, headers = png, {"Content-Type": "application/octet-stream"}
    if label == "fastapi":
        command = [sys.executable, "-m", "uvicorn", "benchmarks.fastapi_baseline:app"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", workers]
        command += ["--log-level", "warning", "--no-access-log"]
        timeout = 90.0
    elif label == "bentoml":
        command = [sys.executable, "-m", "bentoml", "serve", "benchmarks.bentoml_peer:Digits"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        body, headers = multipart(png)
        timeout = 180.0
    else:
        command = [sys.executable, "-m", "benchmarks.ray_peer", "--port", str(port)]
        # On a loaded machine Ray's agents take longer to start than its 15 s default allows.
        env["RAY_raylet_start_wait_time_s"] = "180"
        env["RAY_agent_register_timeout_ms"] = "180000"
        timeout = 300.0
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
    peer = Peer(label, url, body, headers, pid=process.pid, process=process)
    return _wait(peer, timeout)
