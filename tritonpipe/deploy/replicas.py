"""N supervised tritonservers on loopback behind one HAProxy: ``tritonpipe serve --replicas N``.

Each replica serves its own copy of the repository (hard links where possible) in explicit model
control, so a model update can add a version folder to one replica at a time."""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tritonpipe.deploy.balancer import Backend, Balancer, BalancerOptions
from tritonpipe.errors import ServerError
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.server.options import check_repository

log = logging.getLogger("tritonpipe.deploy")

STATE_FILE = "replicas.json"
# Per-model p50/p90/p99 summaries: the p99 alert and the latency panels read them.
METRICS_ARGS = ("--metrics-config=summary_latencies=true", "--metrics-interval-ms=1000")


@dataclass(frozen=True, kw_only=True)
class ReplicaSetOptions:
    """What ``serve --replicas`` starts. The balancer listens on ``host``; replicas only on
    127.0.0.1. With a token, the balancer and the servers require it for every endpoint but
    health, inference included unless ``open_inference``."""

    repository: Path
    replicas: int = 2
    workdir: Path = Path("replicas")
    host: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    token: str | None = None
    open_inference: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    check_interval_ms: int = 500
    balancer_retries: int = 2
    balance: str = "leastconn"  # roundrobin for canaries (weights give exact shares)
    exit_timeout_s: int = 30
    ready_timeout_s: float = 180.0
    trace_url: str | None = None  # every replica traces (Triton's spans and the steps') there
    trace_rate: int = 1

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ServerError(f"--replicas {self.replicas}: give 1 or more")
        if not self.repository.is_dir():
            check_repository(self.repository)  # says why: missing, or a file (a spec?)
        # The balancer's checks (token characters, TLS files) before any replica starts.
        BalancerOptions(
            backends=(Backend(name="check", http_port=1, grpc_port=1),),
            token=self.token,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
        )


def copy_repository(source: Path, target: Path) -> None:
    """A replica's own repository: hard links (no copy of big weights) where the filesystem
    allows. Updates add version folders and replace config.pbtxt by rename, never in place."""
    if target.exists():
        shutil.rmtree(target)

    def link(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


class ReplicaSet:
    """Replicas + balancer. ``with ReplicaSet(options) as fleet: fleet.balancer.http_url``."""

    def __init__(self, options: ReplicaSetOptions) -> None:
        self.options = options
        self.workdir = options.workdir.resolve()
        self.servers: list[TritonServer] = []
        self.balancer: Balancer | None = None

    def _server(self, index: int) -> TritonServer:
        folder = self.workdir / f"replica-{index}"
        repository = folder / "repository"
        copy_repository(self.options.repository, repository)
        models = tuple(
            sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())
        )
        server_options = ServerOptions(
            repository=repository,
            host="127.0.0.1",
            model_control="explicit",
            models=models,
            token=self.options.token,
            protect_inference=not self.options.open_inference,
            exit_timeout_s=self.options.exit_timeout_s,
            extra_args=METRICS_ARGS,
            trace_url=self.options.trace_url,
            trace_rate=self.options.trace_rate,
        )
        return TritonServer(
            server_options,
            log_path=folder / "tritonserver.log",
            ready_timeout_s=self.options.ready_timeout_s,
        )

    def start(self) -> ReplicaSet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.servers = [self._server(i) for i in range(self.options.replicas)]
        try:
            # Started side by side: most of a start is waiting on Python-backend stubs.
            with ThreadPoolExecutor(len(self.servers)) as pool:
                list(pool.map(TritonServer.start, self.servers))
            self.balancer = Balancer(
                BalancerOptions(
                    backends=tuple(
                        Backend(
                            name=self.replica_name(i),
                            http_port=s.options.http_port,
                            grpc_port=s.options.grpc_port,
                        )
                        for i, s in enumerate(self.servers)
                    ),
                    host=self.options.host,
                    http_port=self.options.http_port,
                    grpc_port=self.options.grpc_port,
                    metrics_port=self.options.metrics_port,
                    token=self.options.token,
                    open_inference=self.options.open_inference,
                    tls_cert=self.options.tls_cert,
                    tls_key=self.options.tls_key,
                    check_interval_ms=self.options.check_interval_ms,
                    retries=self.options.balancer_retries,
                    balance=self.options.balance,
                ),
                self.workdir / "balancer",
            ).start()
            for i in range(len(self.servers)):
                self.balancer.runtime.wait_state(self.replica_name(i), up=True)
        except BaseException:
            self.stop()
            raise
        self.write_state()
        return self

    def stop(self) -> None:
        """Balancer first (soft stop: open requests finish), then every replica."""
        if self.balancer is not None:
            self.balancer.stop()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def replica_name(index: int) -> str:
        return f"replica-{index}"

    def state(self) -> dict[str, object]:
        """What ``tritonpipe deploy update`` needs to reach this set from another process."""
        assert self.balancer is not None
        return {
            "balancer": {
                "http_url": self.balancer.http_url,
                "grpc_url": self.balancer.grpc_url,
                "metrics_url": self.balancer.metrics_url,
                "socket": str(self.balancer.socket_path),
                "balance": self.options.balance,
            },
            "replicas": [
                {
                    "name": self.replica_name(i),
                    "http_url": s.http_url,
                    "grpc_url": s.grpc_url,
                    "metrics_url": s.metrics_url,
                    "repository": str(s.options.repository),
                    "pid": s.pid,
                }
                for i, s in enumerate(self.servers)
            ],
        }

    def write_state(self) -> Path:
        """replicas.json, and a prometheus.yml + alerts.yml scraping this set
        (``prometheus --config.file=WORKDIR/prometheus.yml``)."""
        from tritonpipe.deploy.monitoring import alert_rules, dump_yaml, scrape_config

        assert self.balancer is not None
        hostport = [u.split("://", 1)[1].split("/", 1)[0] for u in self._metrics_urls()]
        config = scrape_config(hostport[1:], hostport[:1], rules="alerts.yml")
        (self.workdir / "prometheus.yml").write_text(dump_yaml(config))
        (self.workdir / "alerts.yml").write_text(dump_yaml(alert_rules()))
        path = self.workdir / STATE_FILE
        path.write_text(json.dumps(self.state(), indent=1) + "\n")
        return path

    def _metrics_urls(self) -> list[str]:
        assert self.balancer is not None
        return [self.balancer.metrics_url, *(s.metrics_url for s in self.servers)]
