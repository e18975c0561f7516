"""Servers ``tritonpipe serve`` started, recorded in the state folder while they run, so other
commands can find what they cannot ask Triton (its metrics port) from an HTTP or gRPC URL."""

from __future__ import annotations

import json
from pathlib import Path

from tritonpipe.server.logs import state_folder, state_path


def _record_path(http_port: int) -> Path:
    return state_path() / "servers" / f"{http_port}.json"


def record(http_url: str, grpc_url: str, metrics_url: str) -> Path:
    """Note a started server's addresses; :func:`forget` removes the note when it stops."""
    port = int(http_url.rpartition(":")[2])
    state_folder()
    path = _record_path(port)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"http": http_url, "grpc": grpc_url, "metrics": metrics_url}))
    partial.replace(path)
    return path


def forget(http_url: str) -> None:
    _record_path(int(http_url.rpartition(":")[2])).unlink(missing_ok=True)


def _host_port(url: str) -> tuple[str, str]:
    host, _, port = url.split("://")[-1].rstrip("/").rpartition(":")
    return ("127.0.0.1" if host in ("localhost", "0.0.0.0", "") else host), port


def metrics_url_for(address: str) -> str | None:
    """The metrics URL of the recorded server answering at ``address`` (its HTTP or gRPC
    ``host:port``, with or without a scheme), or None when no running server matches."""
    folder = state_path() / "servers"
    wanted = _host_port(address)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if wanted in (_host_port(entry.get("http", "")), _host_port(entry.get("grpc", ""))):
            return str(entry["metrics"])
    return None
