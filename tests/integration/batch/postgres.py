"""A throwaway PostgreSQL cluster (Debian's `postgresql`) on a free loopback port.

initdb refuses to run as root, so under root the cluster belongs to the ``postgres`` user that
Debian's package creates (commands run through ``runuser``); otherwise to the current user.
The cluster lives in its own folder directly under the system temp folder, not under pytest's:
pytest resets its root folder to mode 0700 whenever a pytest run starts, which would cut the
``postgres`` user off from a running cluster's files.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tritonpipe.server.redis_server import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (`make setup` installs Debian's postgresql)"
        )
    return found[-1]


class PostgresServer:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tritonpipe-postgres-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.root = os.geteuid() == 0
        self.user = "postgres" if self.root else os.environ.get("USER", "postgres")

    def _run(self, *args: str) -> None:
        command = [*args]
        if self.root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        if self.root:
            shutil.chown(self.folder, "postgres")
        self._run(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user)
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = self.folder / "postgres.log"
        self._run(
            _bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start"
        )
        return self

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
