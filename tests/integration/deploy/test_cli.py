"""`tritonpipe serve --replicas 2` and `tritonpipe deploy update` as a user runs them."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.deploy.conftest import TOKEN, X
from tritonpipe.client import Client

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonpipe.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_serve_replicas_then_update_then_refuse_a_broken_build(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    workdir = tmp_path / "replicas"
    serve = subprocess.Popen(
        [sys.executable, "-m", "tritonpipe.cli", "serve", str(builds["v1"]), "--replicas", "2",
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--workdir", str(workdir),
         "--exit-timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**__import__("os").environ, "TRITONPIPE_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        state = workdir / "replicas.json"
        deadline = time.monotonic() + 120
        while not state.is_file():
            assert serve.poll() is None, serve.stdout.read() if serve.stdout else ""
            assert time.monotonic() < deadline, "serve --replicas did not come up"
            time.sleep(0.2)
        fleet = json.loads(state.read_text())
        assert len(fleet["replicas"]) == 2
        assert (workdir / "prometheus.yml").is_file() and (workdir / "alerts.yml").is_file()
        url = fleet["balancer"]["grpc_url"]
        with Client(url, token=TOKEN) as client:
            assert client.infer("affine", {"x": X})["y"][0, 1] == 3.0

        spec = builds["v2"].parent / "pipeline.yaml"
        updated = cli("deploy", "update", str(spec), "--state", str(state), "--token", TOKEN)
        assert updated.returncode == 0, updated.stdout + updated.stderr
        assert "updated 2 replica(s) to scale v2, shift v2, affine v2" in updated.stdout
        with Client(url, token=TOKEN) as client:
            assert client.infer("affine", {"x": X})["y"][0, 1] == 4.0

        broken = tmp_path / "broken"
        shutil.copytree(builds["v1"], broken)
        (broken / "scale" / "1" / "model.py").write_text("raise ImportError('broken build')\n")
        refused = cli("deploy", "update", str(broken), "--state", str(state), "--token", TOKEN)
        assert refused.returncode == 1
        assert "previous build still serves" in refused.stderr
        assert "replica-0: model 'scale' failed to load" in refused.stderr
        with Client(url, token=TOKEN) as client:
            assert client.infer("affine", {"x": X})["y"][0, 1] == 4.0
    finally:
        serve.send_signal(signal.SIGINT)
        output = serve.communicate(timeout=60)[0]
    assert serve.returncode == 0, output
    assert "behind HAProxy" in output


def test_update_without_a_running_set_says_so(tmp_path: Path) -> None:
    result = cli("deploy", "update", str(tmp_path), "--state", str(tmp_path / "replicas.json"))
    assert result.returncode == 1
    assert "cannot read the replica set's state" in result.stderr
