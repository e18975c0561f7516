"""`serve --replicas` and `deploy` refuse bad arguments before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ASSETS
from tests.unit.test_cli import tritonpipe


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replicas", "0"], "--replicas 0: give 1 or more"),
        (
            ["--replicas", "2", "--tls-cert", "/no/cert.pem", "--tls-key", "/no/key.pem"],
            "/no/cert.pem: TLS file not found",
        ),
        (["--replicas", "2", "--tls-cert", "/no/cert.pem"], "needs both a certificate"),
        (["--replicas", "2", "--token", "has spaces"], "token: use 8 to 256 characters"),
    ],
)
def test_serve_replicas_refuses_bad_arguments(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = tritonpipe("serve", str(tmp_path), *args, "--workdir", str(tmp_path / "w"))
    assert result.returncode == 1
    assert message in result.stderr


def test_deploy_commands_have_help() -> None:
    for command in ("update", "manifests"):
        result = tritonpipe("deploy", command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_manifests_command_writes_validated_files(tmp_path: Path) -> None:
    result = tritonpipe(
        "deploy",
        "manifests",
        str(ASSETS / "deploy_pipeline.yaml"),
        "--name",
        "affine",
        "--replicas",
        "3",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 8 files" in result.stdout and "(validated)" in result.stdout
    assert "replicas: 3" in (tmp_path / "kubernetes" / "tritonpipe.yaml").read_text()
    bad = tritonpipe("deploy", "manifests", str(tmp_path / "missing.yaml"), "--out", str(tmp_path))
    assert bad.returncode == 1 and "missing.yaml" in bad.stderr
