"""The churn pipeline (tests/assets/challenger) with a shadow challenger, built and served by a
real tritonserver; its prediction log is a Parquet folder beside the repository."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ASSETS
from tritonpipe.ensembles import build_repository
from tritonpipe.server import ServerOptions, TritonServer


def export_versions(root: Path) -> None:
    from tritonpipe.export import export
    from tritonpipe.tensors import parse_input_spec

    for name in ("champion", "challenger"):
        export(
            f"{root / 'churn_models.py'}:{name}",
            [parse_input_spec("x:FP32:4")],
            root / f"{name}_export",
            formats=("onnx",),
            max_batch_size=32,
            output_names=["y"],
        )


@pytest.fixture(scope="package")
def churn_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("churn")
    shutil.copytree(ASSETS / "challenger", root, dirs_exist_ok=True)
    export_versions(root)
    return root / "pipeline.yaml"


@pytest.fixture(scope="package")
def churn_server(churn_spec: Path) -> Iterator[TritonServer]:
    repository = churn_spec.parent / "build" / "repo"
    build_repository(churn_spec, repository)
    with TritonServer(
        ServerOptions(repository=repository, exit_timeout_s=10),
        log_path=churn_spec.parent / "tritonserver.log",
    ) as running:
        yield running
