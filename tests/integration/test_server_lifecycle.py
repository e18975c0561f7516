"""The launcher fails honestly: a port in use is refused before anything starts, readiness is
asked of the server this process started, restarts stop after repeated failures with the cause
quoted, and no child process of the server survives a stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ASSETS
from tritonpipe.ensembles import build_repository
from tritonpipe.errors import ServerError
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.options import free_port
from tritonpipe.server.process import group_members

# A stage whose stub process ignores SIGTERM, as the orphaned stub in the issue did.
STUBBORN = """
import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)


def echo(x):
    return {"y": x}
"""
SPEC = """
stages:
  stubborn:
    function: stubborn.py:echo
    inputs: [{name: x, dtype: FP32, shape: [4]}]
    outputs: [{name: y, dtype: FP32, shape: [4]}]
    instance_groups: [{count: 2}]
"""


class _AlwaysReady(BaseHTTPRequestHandler):
    """Another server on the port: it answers 200 to every readiness question."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def other_server(port: int = 0, wait_s: float = 10.0) -> Iterator[int]:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            httpd = ThreadingHTTPServer(("127.0.0.1", port), _AlwaysReady)
            break
        except OSError:  # the port is still held by a dying server
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def stubborn_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stubborn")
    (root / "stubborn.py").write_text(STUBBORN)
    (root / "pipeline.yaml").write_text(SPEC)
    build_repository(root / "pipeline.yaml", root / "repo")
    return root / "repo"


def _serve(repository: Path, *args: str, cwd: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "tritonpipe.cli", "serve", str(repository), *args]


def test_serve_refuses_a_port_in_use_before_starting(
    stubborn_repository: Path, tmp_path: Path
) -> None:
    with other_server() as port:
        ports = ["--http-port", str(port), "--grpc-port", "0", "--metrics-port", "0"]
        log = tmp_path / "server.log"
        result = subprocess.run(
            _serve(stubborn_repository, *ports, "--log-file", str(log)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"HTTP port {port} already in use on 127.0.0.1" in result.stderr
    assert "serving" not in result.stdout
    assert not log.exists()  # nothing was started


def test_readiness_is_asked_of_the_server_this_process_started(
    stubborn_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with other_server() as port:
        options = ServerOptions(repository=stubborn_repository, http_port=port)
        server = TritonServer(options, log_path=tmp_path / "server.log", restart=False)
        # As if the other server took the port between the check and tritonserver's bind.
        monkeypatch.setattr(server, "busy_ports", lambda: [])
        with pytest.raises(ServerError) as info:
            server.start()
    message = str(info.value)
    assert "tritonserver exited with code" in message
    assert f"127.0.0.1:{port}" in message and "already in use" in message
    assert "NVML" not in message and "CudaDriverHelper" not in message  # noise left out
    assert server.pid is not None and not group_members(server.pid)


def test_restarts_stop_after_repeated_failures_and_no_child_survives(
    stubborn_repository: Path, tmp_path: Path
) -> None:
    options = ServerOptions(repository=stubborn_repository, exit_timeout_s=2)
    server = TritonServer(
        options, log_path=tmp_path / "server.log", max_failures=2, failure_window_s=60
    ).start()
    first = server.pid
    assert first is not None
    assert len(group_members(first)) >= 3  # tritonserver and its two stubs
    try:
        os.kill(first, signal.SIGKILL)  # a crash; then another process takes the HTTP port
        with other_server(server.options.http_port):
            deadline = time.monotonic() + 60
            while server.failure is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.failure is not None, "the supervisor never gave up"
            assert "died 2 times within 60s" in server.failure
            assert f"HTTP port {server.options.http_port} taken by another process" in (
                server.failure
            )
            assert server.restarts == 0
    finally:
        server.stop()
    assert not group_members(first), "processes of the crashed server survived the stop"


def test_crashed_server_leaves_no_stub_after_stop(
    stubborn_repository: Path, tmp_path: Path
) -> None:
    options = ServerOptions(repository=stubborn_repository, exit_timeout_s=2)
    server = TritonServer(options, log_path=tmp_path / "server.log", restart=False).start()
    pid = server.pid
    assert pid is not None
    stubs = [p for p in group_members(pid) if p != pid]
    assert len(stubs) == 2
    os.kill(pid, signal.SIGKILL)
    server.stop()
    assert not group_members(pid), f"stubs {stubs} survived the stop"


def test_serve_shows_progress_logs_to_state_folder_and_explains_a_slow_stop(
    stubborn_repository: Path, tmp_path: Path
) -> None:
    http = free_port()
    ports = ["--http-port", str(http), "--grpc-port", "0", "--metrics-port", "0"]
    serve = subprocess.Popen(
        _serve(stubborn_repository, *ports, "--exit-timeout", "2"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ASSETS.parent.parent)},
    )
    lines: list[str] = []
    try:
        assert serve.stdout is not None
        deadline = time.monotonic() + 90
        for line in serve.stdout:
            lines.append(line)
            if line.startswith("serving") or time.monotonic() > deadline:
                break
        output = "".join(lines)
        assert "1/1 models ready (stubborn)" in output, output
        log = tmp_path / ".tritonpipe" / "logs" / f"tritonserver-{http}.log"
        assert f"its log: .tritonpipe/logs/tritonserver-{http}.log" in output
        assert log.is_file() and (tmp_path / ".tritonpipe" / ".gitignore").read_text().endswith(
            "*\n"
        )
        # A client that connected and went quiet: Triton waits for it on stop.
        with socket.create_connection(("127.0.0.1", http)):
            time.sleep(0.2)
            serve.send_signal(signal.SIGINT)
            rest, _ = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert "1 HTTP client connection(s) still open; Triton waits up to 2s" in rest, rest
    assert serve.returncode == 0


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@contextmanager
def _serving(repository: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``tritonpipe serve`` on free ports, once it says "serving": it and its tritonserver's pid."""
    ports = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    serve = subprocess.Popen(
        _serve(repository, *ports, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert serve.stdout is not None
        for line in serve.stdout:
            if line.startswith("serving"):
                break
        (server,) = _children(serve.pid)
        yield serve, server
    finally:
        if serve.poll() is None:
            serve.kill()


def test_serve_exits_1_quoting_the_cause_when_it_gives_up(
    stubborn_repository: Path, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    with _serving(stubborn_repository, "--log-file", str(log), "--max-failures", "1") as (
        serve,
        server,
    ):
        os.kill(server, signal.SIGKILL)
        rest, _ = serve.communicate(timeout=60)
    assert serve.returncode == 1, rest
    assert "error: tritonserver died 1 time within 300s; not restarting it again" in rest
    assert "exit code -9" in rest
    assert not group_members(server)


def test_serve_says_which_models_a_timed_out_stop_was_waiting_for(
    stubborn_repository: Path, tmp_path: Path
) -> None:
    """With no time to unload (--exit-timeout 0), tritonserver exits 1 on SIGINT; serve says
    why, from the server's log: the models it was still waiting to unload."""
    log = tmp_path / "log"
    with _serving(stubborn_repository, "--log-file", str(log), "--exit-timeout", "0") as (
        serve,
        _,
    ):
        serve.send_signal(signal.SIGINT)
        rest, _ = serve.communicate(timeout=60)
    why = "the exit timeout expired with 1 model(s) still unloading (stubborn)"
    assert f"tritonserver exited with code 1 ({why}; --exit-timeout is 0s" in rest, rest
    assert "Exit timeout expired" in log.read_text()


def test_server_ends_when_serve_is_killed_with_sigkill(
    stubborn_repository: Path, tmp_path: Path
) -> None:
    """kill -9 leaves serve no chance to stop its server: the server's parent-death signal does."""
    log = tmp_path / "log"
    with _serving(stubborn_repository, "--log-file", str(log), "--exit-timeout", "2") as (
        serve,
        server,
    ):
        assert len(group_members(server)) == 3  # tritonserver and its two stubs
        serve.kill()
        serve.wait(timeout=10)
        deadline = time.monotonic() + 60
        while group_members(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = group_members(server)
    if left:
        os.killpg(server, signal.SIGKILL)
    assert not left, f"tritonserver {server} or its stubs outlived serve: {left}"
