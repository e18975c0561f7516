"""A real nats-server with JetStream on a free loopback port, its store in a folder (tests and
benchmarks)."""

from __future__ import annotations

from tritonpipe.server.local_server import LocalServer


class NatsServer(LocalServer):
    """``NatsServer(folder).start()``; ``url`` for clients, ``stop()`` to shut it down."""

    binary = "nats-server"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        return ["-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.folder)]
