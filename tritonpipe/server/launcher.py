"""Run a real tritonserver: refuse ports in use, start, wait until the server this process started
is ready (model by model), supervise (restart with backoff, giving up after repeated failures),
stop gracefully so in-flight requests finish, and leave no child process behind."""

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
from tritonpipe.server.logs import (
    START_MARKER,
    default_log_path,
    log_excerpt,
    state_folder,
    stop_timeout,
)
from tritonpipe.server.options import TOKEN_HEADER, ServerOptions
from tritonpipe.server.process import (
    end_group,
    listens_on,
    open_connections,
    port_in_use,
    spawn_tied,
)

log = logging.getLogger("tritonpipe.server")


class TritonServer:
    """A supervised tritonserver process. Use as a context manager::

    with TritonServer(ServerOptions(repository=Path("model_repository"))) as server:
        client = Client(server.http_url)

    The log goes to ``log_path`` (default ``state_folder()/logs/tritonserver-PORT.log``). With
    ``restart``, a server that dies is restarted with backoff until it has died
    ``max_failures`` times within ``failure_window_s``; then ``failure`` says why and
    supervision stops.
    """

    def __init__(
        self,
        options: ServerOptions,
        *,
        log_path: Path | None = None,
        ready_timeout_s: float = 120.0,
        restart: bool = True,
        max_backoff_s: float = 8.0,
        max_failures: int = 5,
        failure_window_s: float = 300.0,
    ) -> None:
        self.options = options.with_ports()
        self.install = find_triton()
        self._default_log = log_path is None
        self.log_path = log_path or default_log_path(self.options.http_port)
        self.ready_timeout_s = ready_timeout_s
        self.restart = restart
        self.max_backoff_s = max_backoff_s
        self.max_failures = max_failures
        self.failure_window_s = failure_window_s
        self.restarts = 0
        self.last_crash: str | None = None
        self.failure: str | None = None  # set when supervision gives up
        self.stop_cause: str | None = None  # why the last stop exited non-zero, from the log
        self._deaths: list[float] = []
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
        """Start the server and block until it and every awaited model are ready; a port in use
        is a :class:`ServerError` before anything starts."""
        busy = self.busy_ports()
        if busy:
            raise ServerError(
                f"{', '.join(busy)} already in use on {self.options.host}: another server is "
                "listening there; stop it, or pick other ports (0 picks a free one)"
            )
        if self._default_log:
            state_folder()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._spawn()
        try:
            self._wait_ready(self.ready_timeout_s)
        except ServerError:
            self._terminate(timeout_s=5)
            self._end_children()
            raise
        if self.restart:
            self._supervisor = threading.Thread(
                target=self._supervise, name="triton-supervisor", daemon=True
            )
            self._supervisor.start()
        return self

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM: Triton refuses new requests, waits for open HTTP connections to close and
        in-flight requests to finish (within the exit timeout), then exits. Whatever is left of
        its process group (Python backend stubs) is then ended too."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        code = self._terminate(timeout_s or self.options.exit_timeout_s + 10)
        self._end_children()
        if self._log is not None:
            self._log.close()
        self.stop_cause = self._why_stop_failed() if code else None
        if self.stop_cause:
            log.warning("tritonserver exited with code %s on stop: %s", code, self.stop_cause)
        return code

    def _why_stop_failed(self) -> str | None:
        """From the log: the models a stop was still waiting for when its exit timeout ran out
        (Python-backend instances take about a second each to unload)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        return stop_timeout(text)

    def busy_ports(self) -> list[str]:
        """This server's ports that another process listens on, as "HTTP port 8000"."""
        ports = (
            ("HTTP", self.options.http_port),
            ("gRPC", self.options.grpc_port),
            ("metrics", self.options.metrics_port),
        )
        return [
            f"{kind} port {port}" for kind, port in ports if port_in_use(self.options.host, port)
        ]

    def open_http_connections(self) -> int:
        """Client connections open to the HTTP port; Triton waits for them when it stops."""
        return open_connections(self.options.http_port)

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
            # The wheel's response caches (local); the default /opt/tritonserver/caches is absent.
            f"--cache-directory={self.install.backends.parent / 'caches'}",
        ]
        self._log.write(f"\n{START_MARKER} {' '.join(cmd)}\n".encode())
        self._log.flush()
        with self._lock:
            self._process = spawn_tied(
                cmd,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.install.environment(), **self.options.environment()},
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

    def _bound(self, pid: int) -> bool:
        """The HTTP port's listening socket belongs to the tritonserver this object started, so
        readiness answers are its own (not another server's on the same port)."""
        return listens_on(pid, self.options.http_port)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        models = list(self.options.awaited_models())
        pending, bound = list(models), False
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = process.returncode if process else None
                raise ServerError(
                    f"tritonserver exited with code {code} before it was "
                    f"ready; from its log {self.log_path}:\n{log_excerpt(self.log_path)}"
                )
            if not bound and self._bound(process.pid):
                bound = True
                log.info("tritonserver pid %s is up; loading %d models", process.pid, len(models))
            if bound:
                for model in list(pending):
                    if self._get(f"/v2/models/{model}/ready") == 200:
                        pending.remove(model)
                        log.info(
                            "%d/%d models ready (%s)",
                            len(models) - len(pending),
                            len(models),
                            model,
                        )
                if not pending and self._get("/v2/health/ready") == 200:
                    return
            if time.monotonic() > deadline:
                waiting = f"models {pending}" if pending else "/v2/health/ready"
                if not bound:
                    waiting = "its HTTP endpoint to start"
                raise ServerError(
                    f"tritonserver not ready after {timeout_s:.0f}s (waiting for {waiting}); "
                    f"from its log {self.log_path}:\n{log_excerpt(self.log_path)}"
                )
            time.sleep(0.2)

    def _end_children(self) -> None:
        pid = self.pid
        if pid is None:
            return
        left = end_group(pid)  # start_new_session made the server its group's leader
        if left:
            log.warning(
                "ended %d leftover processes of tritonserver pid %s: %s", len(left), pid, left
            )

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

    def _gave_up(self, cause: str) -> bool:
        """Record a death; True (and ``failure`` set) once there were too many in the window."""
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < self.failure_window_s] + [now]
        if len(self._deaths) < self.max_failures:
            return False
        self.failure = (
            f"tritonserver died {len(self._deaths)} time{'s' if len(self._deaths) > 1 else ''} "
            f"within {self.failure_window_s:.0f}s; not restarting it again. Last cause:\n{cause}"
        )
        log.error("%s", self.failure)
        return True

    def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            process = self._process
            if process is None or process.poll() is None:
                self._stopping.wait(0.2)
                continue
            self._end_children()
            busy = self.busy_ports()
            cause = (
                f"{', '.join(busy)} taken by another process"
                if busy
                else f"exit code {process.returncode}; from its log {self.log_path}:\n"
                + log_excerpt(self.log_path, lines=5)
            )
            self.last_crash = cause
            if self._gave_up(cause):
                return
            log.error("tritonserver died (%s); restarting in %.1fs", cause, backoff)
            if self._stopping.wait(backoff):
                return
            if busy:  # spawning would only fail to bind; count it and wait again
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self._spawn()
            self.restarts += 1
            try:
                self._wait_ready(self.ready_timeout_s)
                backoff = 0.5
                log.info("tritonserver is ready again after restart %d", self.restarts)
            except ServerError as exc:
                log.error("restart %d failed: %s", self.restarts, exc)
                self._terminate(timeout_s=5)  # counted as a death on the next round
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
