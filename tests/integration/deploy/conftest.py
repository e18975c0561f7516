"""Two replicas of the small deploy pipeline behind a real HAProxy, shared by the deploy tests."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ASSETS
from tritonpipe.client import Client
from tritonpipe.deploy.replicas import ReplicaSet, ReplicaSetOptions
from tritonpipe.ensembles import build_repository

TOKEN = "deploy-test-token"
X = np.arange(4, dtype=np.float32).reshape(1, 4)


def build_variant(root: Path, name: str, *replace: tuple[str, str]) -> Path:
    """The deploy pipeline with text replaced in its spec (another factor, a bad offset), built."""
    folder = root / name
    folder.mkdir()
    text = (ASSETS / "deploy_pipeline.yaml").read_text()
    for old, new in replace:
        text = text.replace(old, new)
    (folder / "pipeline.yaml").write_text(text)
    (folder / "deploy_stages.py").write_text((ASSETS / "deploy_stages.py").read_text())
    build_repository(folder / "pipeline.yaml", folder / "repo")
    return folder / "repo"


@pytest.fixture(scope="package")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deploy_builds")
    return {
        "v1": build_variant(root, "v1"),
        "v2": build_variant(root, "v2", ("factor: 2.0", "factor: 3.0")),
        "bad": build_variant(root, "bad", ("offset: 1.0", "offset: -1.0")),
    }


@pytest.fixture(scope="package")
def fleet(
    builds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplicaSet]:
    options = ReplicaSetOptions(
        repository=builds["v1"],
        replicas=2,
        workdir=tmp_path_factory.mktemp("fleet"),
        token=TOKEN,
        exit_timeout_s=5,
    )
    with ReplicaSet(options) as running:
        yield running


@pytest.fixture(scope="package")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class Outcome:
    at: float
    error: str | None
    value: float | None = None


@dataclass
class SteadyLoad:
    """Clients sending the same request back to back over HTTP and gRPC, recording each outcome."""

    urls: list[str]
    retries: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _run(self, url: str) -> None:
        with Client(url, token=TOKEN, retries=self.retries, backoff_s=0.1, timeout_s=10) as client:
            while not self.stop.is_set():
                try:
                    y = client.infer("affine", {"x": X})["y"]
                    self.outcomes.append(Outcome(time.monotonic(), None, float(y[0, 1])))
                except Exception as exc:  # every failure a user would see counts
                    self.outcomes.append(Outcome(time.monotonic(), repr(exc)))

    def __enter__(self) -> SteadyLoad:
        self.threads = [threading.Thread(target=self._run, args=(u,)) for u in self.urls]
        for thread in self.threads:
            thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def failures(self, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        return [o for o in self.outcomes if o.error and since <= o.at < until]

    def values(self, since: float = 0.0) -> set[float]:
        return {o.value for o in self.outcomes if o.value is not None and o.at >= since}
