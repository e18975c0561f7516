"""One real tritonserver per session serving the digits repository plus test-only stages."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ASSETS, DIGITS, SENSORS
from tritonpipe.ensembles import build_repository
from tritonpipe.server import ServerOptions, TritonServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration talks to a real server: `-m "not integration"` skips it."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tabular_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/assets/tabular with its two-input, two-output model exported beside it."""
    from tritonpipe.export import export
    from tritonpipe.tensors import parse_input_spec

    root = tmp_path_factory.mktemp("tabular")
    shutil.copytree(ASSETS / "tabular", root, dirs_exist_ok=True)
    inputs = [parse_input_spec("a:FP32:4"), parse_input_spec("b:FP32:-1=5")]
    export(f"{ASSETS / 'models.py'}:two_in_two_out", inputs, root / "export", max_batch_size=16)
    return root / "pipeline.yaml"


@pytest.fixture(scope="session")
def repository(
    trained_export: Path, tabular_spec: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("serving")
    build_repository(DIGITS / "pipeline.yaml", root / "repo")
    for i, spec in enumerate(
        (ASSETS / "test_pipeline.yaml", ASSETS / "capped_pipeline.yaml", tabular_spec)
    ):
        build_repository(spec, root / f"extra{i}")
        for folder in (root / f"extra{i}").iterdir():
            shutil.move(str(folder), root / "repo" / folder.name)
    # Triton answers "queue full" (HTTP 429 / gRPC UNAVAILABLE) past one queued request.
    with (root / "repo" / "overloaded" / "config.pbtxt").open("a") as config:
        config.write("dynamic_batching {\n  default_queue_policy { max_queue_size: 1 }\n}\n")
    return root / "repo"


@pytest.fixture(scope="session")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    log = tmp_path_factory.mktemp("logs") / "tritonserver.log"
    with TritonServer(
        ServerOptions(repository=repository, exit_timeout_s=5), log_path=log
    ) as running:
        yield running


@pytest.fixture(params=["http", "grpc"])
def url(request: pytest.FixtureRequest, server: TritonServer) -> str:
    return server.http_url if request.param == "http" else server.grpc_url


@pytest.fixture(scope="session")
def heldout(trained_export: Path) -> tuple[np.ndarray, np.ndarray]:
    """All held-out digits as a BYTES batch of PNGs, and their labels."""
    folder = trained_export.parent / "heldout"
    truth = json.loads((folder / "labels.json").read_text())
    names = sorted(truth)
    images = np.array([[(folder / n).read_bytes()] for n in names], dtype=object)
    return images, np.array([truth[n] for n in names])


@pytest.fixture(scope="session")
def sensors_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/sensors built in a temporary folder (generated readings, a seconds-fast
    training run, ONNX export): its pipeline.yaml, ensemble ``sensors``."""
    import runpy

    build = runpy.run_path(str(SENSORS / "build.py"))["build"]
    spec: Path = build(tmp_path_factory.mktemp("sensors"))
    return spec


@pytest.fixture(scope="session")
def sensor_readings() -> object:
    """examples/sensors/generate.py's ``readings(n, seed)``."""
    import runpy

    return runpy.run_path(str(SENSORS / "generate.py"))["readings"]


@pytest.fixture(scope="session")
def sensors_server(
    sensors_spec: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A tritonserver serving the sensors pipeline (fused ensemble ``sensors``)."""
    root = tmp_path_factory.mktemp("sensors_server")
    build_repository(sensors_spec, root / "repo")
    with TritonServer(
        ServerOptions(repository=root / "repo", exit_timeout_s=5), log_path=root / "log"
    ) as running:
        yield running


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local Spark session (a JVM, ~60 s to start) for every Spark test."""
    from tritonpipe.batch.spark import session

    running = session("local[2]")
    yield running
    running.stop()
