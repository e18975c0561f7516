"""HAProxy in front of tritonserver replicas: HTTP and gRPC (HTTP/2) balancing, readiness health
checks, the token and TLS enforced at the edge, and its runtime API for draining a replica.

HAProxy rather than nginx: open-source nginx has no active health checks (only passive
``max_fails``), no runtime API to drain a server without a reload, and no per-server up/down
state to read back; HAProxy has all three, and balances gRPC per HTTP/2 stream."""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tritonpipe.errors import ServerError
from tritonpipe.server.options import TOKEN_HEADER, free_port
from tritonpipe.server.process import spawn_tied

log = logging.getLogger("tritonpipe.deploy")

GRPC_TOKEN_HEADER = f"triton-grpc-protocol-{TOKEN_HEADER}"
READY_PATH = "/v2/health/ready"
# Characters a token may hold: it is written into haproxy.cfg as a literal string.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]{8,256}")


@dataclass(frozen=True, kw_only=True)
class Backend:
    """One replica as the balancer sees it (loopback ports)."""

    name: str
    http_port: int
    grpc_port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class BalancerOptions:
    """``check_interval_ms`` x ``fall`` is the detection window for a dead replica; ``retries``
    lets HAProxy resend a request whose connection failed (to another replica)."""

    backends: tuple[Backend, ...]
    host: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    token: str | None = None
    token_env: str | None = None  # instead of token: HAProxy reads it from this variable
    open_inference: bool = False  # the token guards only the admin endpoints, as on Triton
    tls_cert: Path | None = None
    tls_key: Path | None = None
    dns: str | None = None  # a resolver for backend host names (in Docker: 127.0.0.11:53)
    check_interval_ms: int = 500
    fall: int = 2
    rise: int = 2
    retries: int = 2
    # leastconn (default) sends each request to the least busy replica; roundrobin follows the
    # replicas' weights exactly, which a canary's share of traffic needs (tritonpipe.deploy.canary).
    balance: str = "leastconn"
    extra: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.backends:
            raise ServerError("the balancer needs at least one replica")
        if self.token is not None and not TOKEN_PATTERN.fullmatch(self.token):
            raise ServerError(
                "token: use 8 to 256 characters from letters, digits and ._~+/=- "
                "(it is matched literally in the balancer's config)"
            )
        if self.balance not in ("leastconn", "roundrobin"):
            raise ServerError(f"balance {self.balance!r}: choose leastconn or roundrobin")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServerError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ServerError(f"{path}: TLS file not found")

    @property
    def detection_window_s(self) -> float:
        return self.check_interval_ms * self.fall / 1000

    def with_ports(self) -> BalancerOptions:
        from dataclasses import replace

        return replace(
            self,
            http_port=self.http_port or free_port(self.host),
            grpc_port=self.grpc_port or free_port(self.host),
            metrics_port=self.metrics_port or free_port(self.host),
        )


# With open inference, what the token still guards: Triton's restricted APIs other than
# inference (model-repository, shared-memory, statistics, trace, logging).
ADMIN_HTTP = (
    "    acl admin path_beg /v2/repository /v2/systemsharedmemory /v2/cudasharedmemory "
    "/v2/logging /v2/trace /v2/models/stats",
    "    acl admin path_reg ^/v2/models/[^/]+(/versions/[^/]+)?/(stats|trace)",
)
ADMIN_GRPC = tuple(
    f"    acl admin path_beg /inference.GRPCInferenceService/{method}"
    for method in (
        "Repository",
        "SystemSharedMemory",
        "CudaSharedMemory",
        "ModelStatistics",
        "TraceSetting",
        "LogSettings",
    )
)


def _token_rule(header: str, options: BalancerOptions, grpc: bool) -> list[str]:
    if options.token_env:
        token = f'"${{{options.token_env}}}"'
    elif options.token:
        token = options.token
    else:
        return []
    # Health endpoints stay open (as on Triton itself) so outer probes need no secret.
    health = (
        "/inference.GRPCInferenceService/ServerLive /inference.GRPCInferenceService/ServerReady"
        if grpc
        else "/v2/health/"
    )
    rule = [
        f"    acl health path_beg {health}",
        f"    acl token_ok req.hdr({header}) -m str {token}",
    ]
    refuse = "if !token_ok !health"
    if options.open_inference:
        rule += list(ADMIN_GRPC if grpc else ADMIN_HTTP)
        refuse = "if !token_ok admin"
    if grpc:  # HTTP/2 status 401 reaches a gRPC client as UNAUTHENTICATED
        return [*rule, f"    http-request deny deny_status 401 {refuse}"]
    body = (
        f'{{"error":"missing or wrong {header} header (refused by the balancer): pass the '
        'token the servers were started with (--token or TRITONPIPE_TOKEN)"}'
    )
    return [
        *rule,
        f"    http-request return status 401 content-type application/json string '{body}' "
        f"{refuse}",
    ]


def render_config(options: BalancerOptions, socket_path: Path, pem: Path | None) -> str:
    """haproxy.cfg for these options; ``pem`` is the certificate and key in one file."""
    tls = f" ssl crt {pem}" if pem else ""
    check = (
        f"default-server inter {options.check_interval_ms} fastinter {options.check_interval_ms} "
        f"downinter {options.check_interval_ms} fall {options.fall} rise {options.rise}"
    )
    if options.dns:  # names resolve once their containers exist; HAProxy starts before that
        check += " resolvers dns init-addr last,libc,none"
    lines = [
        "# Written by tritonpipe.deploy; regenerated on every start.",
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        "    maxconn 4096",
        *(["resolvers dns", f"    nameserver dns {options.dns}"] if options.dns else []),
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        # A health check connects within the check interval, then may wait this long for the
        # answer: a busy replica (a loaded machine, a model reloading next door) is not marked
        # down for one slow answer, while a dead one (refused connection) still falls at once.
        "    timeout check 2s",
        "    timeout client 120s",
        "    timeout server 120s",
        "    timeout http-request 30s",
        "    timeout http-keep-alive 60s",
        f"    retries {options.retries}",
        # A request whose connection failed, or whose replica died before answering, goes to
        # another replica: inference is a pure function of its inputs, so a resend is safe.
        "    option redispatch 1",
        "    retry-on conn-failure empty-response" if options.retries else "    retry-on none",
        f"    {check}",
        "",
        "frontend triton_http_in",
        f"    bind {options.host}:{options.http_port}{tls}" + (" alpn http/1.1" if pem else ""),
        *_token_rule(TOKEN_HEADER, options, grpc=False),
        "    default_backend triton_http",
        "",
        "frontend triton_grpc_in",
        f"    bind {options.host}:{options.grpc_port}{tls}" + (" alpn h2" if pem else " proto h2"),
        *_token_rule(GRPC_TOKEN_HEADER, options, grpc=True),
        "    default_backend triton_grpc",
        "",
        "frontend balancer_metrics",
        f"    bind {options.host}:{options.metrics_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "",
    ]
    for kind in ("http", "grpc"):
        lines += [
            f"backend triton_{kind}",
            f"    balance {options.balance}",
            f"    option httpchk GET {READY_PATH}",
            "    http-check expect status 200",
        ]
        for b in options.backends:
            if kind == "http":
                lines.append(f"    server {b.name} {b.host}:{b.http_port} check")
            else:
                # gRPC travels as cleartext HTTP/2; the health check asks the replica's HTTP port.
                lines.append(
                    f"    server {b.name} {b.host}:{b.grpc_port} proto h2 check port "
                    f"{b.http_port} check-proto h1"
                )
        lines.append("")
    lines += list(options.extra)
    return "\n".join(lines) + "\n"


class Balancer:
    """A running HAProxy. Use as a context manager, or start()/stop()."""

    def __init__(self, options: BalancerOptions, workdir: Path) -> None:
        self.options = options.with_ports()
        self.workdir = workdir
        self.config_path = workdir / "haproxy.cfg"
        self.socket_path = workdir / "haproxy.sock"
        self.log_path = workdir / "haproxy.log"
        self.runtime = Runtime(self.socket_path)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        scheme = "https" if self.options.tls_cert else "http"
        return f"{scheme}://{self.options.host}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.options.host}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self.options.metrics_port}/metrics"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pem = None
        if self.options.tls_cert and self.options.tls_key:
            pem = self.workdir / "balancer.pem"
            pem.write_bytes(self.options.tls_cert.read_bytes() + self.options.tls_key.read_bytes())
            pem.chmod(0o600)
        self.config_path.write_text(render_config(self.options, self.socket_path.resolve(), pem))
        self.config_path.chmod(0o600)  # it holds the token
        return self.config_path

    def start(self, timeout_s: float = 30.0) -> Balancer:
        binary = shutil.which("haproxy")
        if binary is None:
            raise ServerError(
                "haproxy not found: install it (apt-get install haproxy, or make setup)"
            )
        self.write_config()
        checked = subprocess.run(
            [binary, "-c", "-q", "-f", str(self.config_path)], capture_output=True, text=True
        )
        if checked.returncode != 0:
            raise ServerError(f"haproxy rejected {self.config_path}:\n{checked.stderr.strip()}")
        with self.log_path.open("ab") as out:
            self._process = spawn_tied(
                [binary, "-db", "-f", str(self.config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while not self.socket_path.exists() or not self._answers():
            if self._process.poll() is not None:
                raise ServerError(
                    f"haproxy exited with code {self._process.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"haproxy did not answer within {timeout_s:.0f}s")
            time.sleep(0.1)
        log.info("haproxy pid %s: %s %s", self._process.pid, self.http_url, self.grpc_url)
        return self

    def _answers(self) -> bool:
        try:
            self.runtime.command("show info")
            return True
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Soft stop (SIGUSR1): stop listening, let open requests finish, then exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGUSR1)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Balancer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Runtime:
    """HAProxy's runtime API on its admin socket; usable from any process on the machine."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def command(self, line: str) -> str:
        """One command on HAProxy's admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[tuple[str, str], dict[str, str]]:
        """``show stat`` rows of the replicas, keyed by (backend, replica name)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            (row["pxname"], row["svname"]): row
            for row in rows
            if row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def set_state(self, replica: str, state: str) -> None:
        """``ready``, ``drain`` (no new requests) or ``maint`` for a replica in both backends."""
        for backend in ("triton_http", "triton_grpc"):
            answer = self.command(f"set server {backend}/{replica} state {state}").strip()
            if answer:
                raise ServerError(f"haproxy refused to set {backend}/{replica} {state}: {answer}")

    def up(self, replica: str) -> bool:
        rows = self.servers()
        return all(
            rows[(b, replica)]["status"].startswith("UP") for b in ("triton_http", "triton_grpc")
        )

    def wait_state(self, replica: str, up: bool, timeout_s: float = 60.0) -> None:
        """Block until HAProxy's health checks see ``replica`` up (or down) in both backends."""
        deadline = time.monotonic() + timeout_s
        while self.up(replica) != up:
            if time.monotonic() > deadline:
                raise ServerError(
                    f"replica {replica} not {'up' if up else 'down'} in the balancer after "
                    f"{timeout_s:.0f}s"
                )
            time.sleep(0.1)

    def set_weight(self, replica: str, weight: int) -> None:
        """The replica's weight (0-256) in both backends: its share of new requests."""
        for backend in ("triton_http", "triton_grpc"):
            answer = self.command(f"set weight {backend}/{replica} {weight}").strip()
            if answer:
                raise ServerError(
                    f"haproxy refused weight {weight} for {backend}/{replica}: {answer}"
                )

    def weights(self) -> dict[str, int]:
        """Each replica's current weight (as the HTTP backend has it)."""
        return {
            name: int(row["weight"] or 0)
            for (backend, name), row in self.servers().items()
            if backend == "triton_http"
        }

    def in_flight(self, replica: str) -> int:
        rows = self.servers()
        return sum(int(rows[(b, replica)]["scur"] or 0) for b in ("triton_http", "triton_grpc"))
