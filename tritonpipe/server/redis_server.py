"""A real redis-server on a free loopback port, without persistence (tests and benchmarks)."""

from __future__ import annotations

from tritonpipe.server.local_server import LocalServer
from tritonpipe.server.options import free_port

__all__ = ["RedisServer", "free_port"]


class RedisServer(LocalServer):
    """``RedisServer(folder).start()``; ``url`` for clients, ``stop()`` to shut it down."""

    binary = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        return ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""] + [
            "--appendonly", "no", "--dir", str(self.folder)
        ]  # fmt: skip
