"""A real nats-server with JetStream on a free loopback port, its store in a folder (tests and
benchmarks)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tritonpipe.errors import ServerError
from tritonpipe.perf.redis_server import free_port


class NatsServer:
    """``NatsServer(folder).start()``; ``url`` for clients, ``stop()`` to shut it down."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("nats-server") is None:
            raise ServerError("nats-server is not installed (`make setup` installs it)")
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> NatsServer:
        self.process = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port)]
            + ["-sd", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ServerError(f"nats-server did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
