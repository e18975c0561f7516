"""The docker command and server arguments: text only, no server started."""

from __future__ import annotations

from pathlib import Path

from tritonpipe.server import ServerOptions


def test_docker_command_uses_ngc_image(tmp_path: Path) -> None:
    options = ServerOptions(repository=tmp_path, http_port=8000, grpc_port=8001, metrics_port=8002)
    command = options.docker_command()
    assert command.startswith("docker run --rm --gpus all")
    assert (
        "nvcr.io/nvidia/tritonserver:24.10-py3 tritonserver --model-repository=/models" in command
    )
    assert "-p 8000:8000" in command and "--http-address" not in command
    # A token protects inference by default; opened, only the admin endpoints.
    token = ServerOptions(repository=tmp_path, token="t").arguments()
    restricted = "model-repository,shared-memory,statistics,trace,logging"
    assert f"--http-restricted-api={restricted},inference:tritonpipe-token=t" in token
    assert f"--grpc-restricted-protocol={restricted},inference:tritonpipe-token=t" in token
    opened = ServerOptions(repository=tmp_path, token="t", protect_inference=False).arguments()
    assert f"--http-restricted-api={restricted}:tritonpipe-token=t" in opened
