"""A throwaway PostgreSQL cluster (Debian's `postgresql`) on a free loopback port.

initdb refuses to run as root, so under root the cluster belongs to the ``postgres`` user that
Debian's package creates (commands run through ``runuser``); otherwise to the current user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from tritonpipe.perf.redis_server import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (`make setup` installs Debian's postgresql)"
        )
    return found[-1]


class PostgresServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
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
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.root:
            shutil.chown(self.folder, "postgres")
            os.chmod(self.folder, 0o755)
            for parent in self.folder.parents:  # runuser needs to traverse the temp folders
                if str(parent).startswith("/tmp/") or str(parent) == "/tmp":
                    os.chmod(parent, os.stat(parent).st_mode | 0o111)
        self._run(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user)
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = self.folder / "postgres.log"
        self._run(
            _bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start"
        )
        return self

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
