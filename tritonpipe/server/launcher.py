"""Run a real tritonserver: start, wait for readiness, supervise (restart with backoff when it
dies), stop gracefully so in-flight requests finish."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

from tritonpipe.errors import ServerError
from tritonpipe.server.install import find_triton
from tritonpipe.server.options import TOKEN_HEADER, ServerOptions

log = logging.getLogger("tritonpipe.server")


# Lines every CPU-only start prints; they explain nothing about a failure.
HARMLESS = ("Failed to initialize NVML", "DCGM", "CUDA driver version is insufficient")
START_MARKER = "=== tritonpipe: starting"


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


class TritonServer:
    """A supervised tritonserver process. Use as a context manager::

    with TritonServer(ServerOptions(repository=Path("model_repository"))) as server:
        client = Client(server.http_url)
    """

    def __init__(
        self,
        options: ServerOptions,
        *,
        log_path: Path | None = None,
        ready_timeout_s: float = 120.0,
        restart: bool = True,
        max_backoff_s: float = 8.0,
    ) -> None:
        self.options = options.with_ports()
        self.install = find_triton()
        self.log_path = log_path or Path(f"tritonserver-{self.options.http_port}.log")
        self.ready_timeout_s = ready_timeout_s
        self.restart = restart
        self.max_backoff_s = max_backoff_s
        self.restarts = 0
        self.last_crash: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{self.options.host}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.options.host}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self.options.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> TritonServer:
        """Start the server and block until it and every awaited model are ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._spawn()
        try:
            self._wait_ready(self.ready_timeout_s)
        except ServerError:
            self._terminate(timeout_s=5)
            raise
        if self.restart:
            self._supervisor = threading.Thread(
                target=self._supervise, name="triton-supervisor", daemon=True
            )
            self._supervisor.start()
        return self

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM: Triton refuses new requests, finishes in-flight ones, then exits."""
        self._stopping.set()
        code = self._terminate(timeout_s or self.options.exit_timeout_s + 10)
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        if self._log is not None:
            self._log.close()
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def is_ready(self) -> bool:
        return self._get("/v2/health/ready") == 200

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the server (after a restart, say) and its models answer ready."""
        self._wait_ready(timeout_s)

    # -- internals -------------------------------------------------------------------------
    def _spawn(self) -> None:
        assert self._log is not None
        cmd = [
            str(self.install.binary),
            *self.options.arguments(),
            f"--backend-directory={self.install.backends}",
        ]
        self._log.write(f"\n{START_MARKER} {' '.join(cmd)}\n".encode())
        self._log.flush()
        with self._lock:
            self._process = subprocess.Popen(
                cmd,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.install.environment(),
                start_new_session=True,
            )
        log.info(
            "tritonserver pid %s: http %s grpc %s", self._process.pid, self.http_url, self.grpc_url
        )

    def _request(self, path: str) -> urllib.request.Request:
        """A request to this server's HTTP endpoint, carrying the token when there is one."""
        request = urllib.request.Request(self.http_url + path)
        if self.options.token:
            request.add_header(TOKEN_HEADER, self.options.token)
        return request

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self._request(path), timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (OSError, ValueError):
            return 0

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = ["/v2/health/ready"] + [
            f"/v2/models/{m}/ready" for m in self.options.awaited_models()
        ]
        while pending:
            process = self._process
            if process is not None and process.poll() is not None:
                raise ServerError(
                    f"tritonserver exited with code {process.returncode} before it was "
                    f"ready; from its log {self.log_path}:\n{log_excerpt(self.log_path)}"
                )
            if self._get(pending[0]) == 200:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise ServerError(
                    f"tritonserver not ready after {timeout_s:.0f}s (waiting for "
                    f"{pending[0]}); from its log {self.log_path}:\n{log_excerpt(self.log_path)}"
                )
            time.sleep(0.1)

    def _terminate(self, timeout_s: float) -> int | None:
        with self._lock:
            process = self._process
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("tritonserver did not stop within %.0fs; killing it", timeout_s)
            process.kill()
            return process.wait()

    def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            process = self._process
            if process is None or process.poll() is None:
                self._stopping.wait(0.2)
                continue
            self.last_crash = log_excerpt(self.log_path, lines=5)
            log.error(
                "tritonserver died (exit code %s); restarting in %.1fs. From its log:\n%s",
                process.returncode,
                backoff,
                self.last_crash,
            )
            if self._stopping.wait(backoff):
                return
            self._spawn()
            self.restarts += 1
            try:
                self._wait_ready(self.ready_timeout_s)
                backoff = 0.5
                log.info("tritonserver is ready again after restart %d", self.restarts)
            except ServerError as exc:
                log.error("restart %d failed: %s", self.restarts, exc)
                backoff = min(backoff * 2, self.max_backoff_s)

    def statistics(self) -> dict[str, object]:
        """The statistics endpoint (all models), as JSON."""
        with urllib.request.urlopen(self._request("/v2/models/stats"), timeout=5) as response:
            data: dict[str, object] = json.loads(response.read())
            return data


@contextmanager
def serve(repository: Path, **kwargs: object) -> Iterator[TritonServer]:
    """``with serve(Path("model_repository")) as server: ...`` with default options."""
    options = ServerOptions(repository=repository, **kwargs)  # type: ignore[arg-type]
    with TritonServer(options) as server:
        yield server
