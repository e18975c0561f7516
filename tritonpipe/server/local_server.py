"""A real server binary (redis-server, nats-server) on a free loopback port, for tests and
benchmarks: started tied to this process, ready once its port accepts connections."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TypeVar

from tritonpipe.errors import ServerError
from tritonpipe.server.options import free_port
from tritonpipe.server.process import spawn_tied

S = TypeVar("S", bound="LocalServer")


class LocalServer:
    """``Server(folder).start()``; ``stop()`` to shut it down. Subclasses name the binary and
    its command line."""

    binary = ""

    def __init__(self, folder: Path) -> None:
        if shutil.which(self.binary) is None:
            raise ServerError(f"{self.binary} is not installed (`make setup` installs it)")
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The server's environment (None: this process's)."""
        return None

    def start(self: S, timeout_s: float = 10.0) -> S:
        self.process = spawn_tied(
            [self.binary, *self.arguments()],
            env=self.environment(),
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
        raise ServerError(f"{self.binary} did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
