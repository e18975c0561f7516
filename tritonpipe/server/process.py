"""What the launcher asks of the operating system: whether a port is free, which processes a
server's process group still holds, how to end them all, and how many clients are connected."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Linux sends a child's parent-death signal when the THREAD that forked it ends, not the process:
# children are forked from one thread that lives as long as the process, so a server started from
# a short-lived thread (a replica starting in a pool) is not ended with that thread.
_spawner: ThreadPoolExecutor | None = None


def spawn_tied(command: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(command, **popen)``, but the child gets SIGTERM when this process
    dies, even by ``kill -9`` (util-linux ``setpriv --pdeathsig``, which then execs the command,
    so the child's pid is the command's). Elsewhere, or without setpriv, a plain Popen."""
    global _spawner
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None:
        return subprocess.Popen(command, **popen)
    if _spawner is None:
        _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tritonpipe-spawner")
    tied = [setpriv, "--pdeathsig", "TERM", "--", *command]
    return _spawner.submit(_popen, tied, popen).result()


def _popen(command: list[str], popen: dict[str, Any]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, **popen)


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` (a socket in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (Linux /proc; empty elsewhere)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ')'.
            fields = entry.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.parent.name))
    return members


def end_group(pgid: int, grace_s: float = 3.0) -> list[int]:
    """SIGTERM then SIGKILL whatever is left in process group ``pgid`` (the Python backend's
    stubs outlive a crashed tritonserver and some ignore SIGTERM). Returns the pids killed."""
    left = group_members(pgid)
    if not left:
        return []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + grace_s
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return left


def open_connections(port: int) -> int:
    """Established TCP connections to local ``port`` (Linux /proc/net/tcp*; 0 elsewhere)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEXIP:HEXPORT; state 01 is ESTABLISHED.
            if len(fields) > 3 and fields[3] == "01" and fields[1].endswith(f":{port:04X}"):
                count += 1
    return count


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # state 0A is LISTEN; field 9 is the socket's inode.
            if len(fields) > 9 and fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
                inodes.add(fields[9])
    return inodes


def listens_on(pid: int, port: int) -> bool:
    """True when process ``pid`` holds the socket listening on ``port``: answers on that port
    then come from it, not from another server. Without Linux's /proc it cannot tell: True."""
    if not Path("/proc/net/tcp").exists():
        return True
    inodes = _listening_inodes(port)
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False
