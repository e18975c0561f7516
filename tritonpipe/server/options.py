"""What a tritonserver is started with, and the command line that says it."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from tritonpipe.errors import ServerError
from tritonpipe.server.cache import DEFAULT_CACHE_BYTES, cache_arguments

TOKEN_HEADER = "tritonpipe-token"
# Endpoints a token always protects; "inference" joins them unless inference is opened.
RESTRICTED = ("model-repository", "shared-memory", "statistics", "trace", "logging")
# What a refusal tells the caller to do.
TOKEN_HINT = f"pass the server's token (--token or TRITONPIPE_TOKEN; header {TOKEN_HEADER})"
TRACE_URL_ENV = "TRITONPIPE_TRACE_URL"  # read by tritonpipe.tracing inside the models
NGC_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51.0, as in the wheel


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_repository(path: Path) -> None:
    """Refuse what is not a model repository before a server starts: it would serve nothing,
    forever. A pipeline spec or an export folder says what to run first."""
    build = "run `tritonpipe build SPEC.yaml --out DIR`, then serve DIR"
    if path.is_file():
        hint = build.replace("SPEC.yaml", str(path)) if path.suffix in (".yaml", ".yml") else build
        raise ServerError(f"{path}: is a file, not a model repository; {hint}")
    if not path.is_dir():
        raise ServerError(f"{path}: model repository not found")
    if any((p / "config.pbtxt").is_file() for p in path.iterdir()):
        return
    what = ""
    if (path / "manifest.json").is_file():
        what = " (it is an export folder: name it under `models:` of a pipeline spec)"
    elif specs := sorted(p.name for p in path.glob("*.y*ml")):
        what = f" (it holds {', '.join(specs[:3])}: a pipeline spec is built, not served)"
    raise ServerError(f"{path}: holds no model folders{what}; {build}")


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """Ports of 0 are picked free at start. ``models`` are the ones loaded at start in explicit
    mode, and the ones waited for (default: every model folder in the repository)."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    model_control: str = "none"  # or "explicit"
    models: tuple[str, ...] = ()
    token: str | None = None
    protect_inference: bool = True  # with a token; False opens inference (serve --open-inference)
    log_verbose: int = 0
    exit_timeout_s: int = 30
    # Triton's local response cache, started when a model's config enables response_cache.
    cache_bytes: int = DEFAULT_CACHE_BYTES
    # OpenTelemetry tracing (tritonpipe.tracing): Triton's spans and each step's, to this
    # OTLP/HTTP endpoint; Triton traces 1 request in ``trace_rate`` (0: only requests that
    # carry a client's traceparent, which Triton always traces).
    trace_url: str | None = None
    trace_rate: int = 1
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.model_control not in ("none", "explicit"):
            raise ServerError(f"model control mode {self.model_control!r}: use none or explicit")
        if not self.repository.is_dir():
            check_repository(self.repository)  # says why: missing, or a file (a spec?)

    def with_ports(self) -> ServerOptions:
        """A copy with every 0 port replaced by a free one."""
        return replace(
            self,
            http_port=self.http_port or free_port(self.host),
            grpc_port=self.grpc_port or free_port(self.host),
            metrics_port=self.metrics_port or free_port(self.host),
        )

    def repository_models(self) -> tuple[str, ...]:
        return tuple(
            sorted(p.name for p in self.repository.iterdir() if (p / "config.pbtxt").is_file())
        )

    def awaited_models(self) -> tuple[str, ...]:
        if self.model_control == "explicit":
            return self.models
        return self.repository_models()

    def arguments(self, repository: str | None = None) -> list[str]:
        """tritonserver's arguments; ``repository`` replaces the path (e.g. inside a container)."""
        args = [
            f"--model-repository={repository or self.repository.resolve()}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={self.model_control}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
        ]
        args += [f"--load-model={m}" for m in self.models if self.model_control == "explicit"]
        if self.token:
            apis = ",".join(RESTRICTED + (("inference",) if self.protect_inference else ()))
            rule = f"{apis}:{TOKEN_HEADER}={self.token}"
            args += [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]
        args += cache_arguments(self.repository, self.cache_bytes, self.extra_args)
        args += self.trace_arguments()
        return args + list(self.extra_args)

    def trace_arguments(self) -> list[str]:
        """Triton's OpenTelemetry tracing to ``trace_url``; the models' step spans go there too
        (``environment``)."""
        if not self.trace_url:
            return []
        if self.trace_rate < 0:
            raise ServerError(f"trace rate {self.trace_rate}: use 0 or more")
        return [
            "--trace-config=mode=opentelemetry",
            f"--trace-config=opentelemetry,url={self.trace_url}",
            f"--trace-config=rate={self.trace_rate}",
            "--trace-config=level=TIMESTAMPS",
            "--trace-config=count=-1",
        ]

    def environment(self) -> dict[str, str]:
        """Variables the server's Python models need besides Triton's own (the step spans' URL)."""
        return {TRACE_URL_ENV: self.trace_url} if self.trace_url else {}

    def token_banner(self) -> str:
        """What the token protects, for the line ``serve`` prints once it is up."""
        if not self.token:
            return "no token: every endpoint is open (--token or TRITONPIPE_TOKEN protects them)"
        if self.protect_inference:
            return (
                f"token required (header {TOKEN_HEADER}) for inference and the admin endpoints; "
                "--open-inference would answer inference without it"
            )
        return (
            f"inference is OPEN (--open-inference); the token (header {TOKEN_HEADER}) protects "
            "only the repository, shared-memory, statistics, trace and logging endpoints"
        )

    def docker_command(self) -> str:
        """The equivalent run of NVIDIA's NGC image (build the repository with --runtime native)."""
        ports = " ".join(f"-p {p}:{p}" for p in (self.http_port, self.grpc_port, self.metrics_port))
        args = [
            a
            for a in self.arguments("/models")
            if not a.startswith(("--http-address", "--grpc-address", "--metrics-address"))
        ]
        env = " ".join(f"-e {k}={v}" for k, v in self.environment().items())
        return (
            f"docker run --rm --gpus all --shm-size 1g {ports} {env + ' ' if env else ''}"
            f"-v {self.repository.resolve()}:/models {NGC_IMAGE} tritonserver " + " ".join(args)
        )
