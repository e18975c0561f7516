"""What a rollout decides before touching a server: load order, version numbers, smoke inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ASSETS
from tritonpipe.deploy.rollout import (
    Replica,
    Rollout,
    load_order,
    others_in_rotation,
    synthetic_inputs,
    versions,
)
from tritonpipe.ensembles import build_repository
from tritonpipe.errors import DeployError


def test_ensembles_load_after_their_steps_and_versions_count_up(tmp_path: Path) -> None:
    build_repository(ASSETS / "deploy_pipeline.yaml", tmp_path / "repo")
    assert load_order(tmp_path / "repo") == ["scale", "shift", "affine"]
    (tmp_path / "repo" / "scale" / "3").mkdir()
    assert versions(tmp_path / "repo" / "scale") == [1, 3]
    assert versions(tmp_path / "repo" / "missing") == []


def test_an_empty_build_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="no models"):
        load_order(tmp_path)
    with pytest.raises(DeployError, match="no replicas"):
        Rollout([])


def test_a_smoke_model_outside_the_build_is_refused(tmp_path: Path) -> None:
    build_repository(ASSETS / "deploy_pipeline.yaml", tmp_path / "repo")
    replica = Replica(name="r", http_url="http://127.0.0.1:1", repository=tmp_path / "live")
    with pytest.raises(DeployError, match=r"smoke model\(s\) \['digits'\] are not in the build"):
        Rollout([replica], smoke_models=["digits"]).run(tmp_path / "repo")
    assert not (tmp_path / "live").exists()


def test_smoke_inputs_are_zeros_and_bytes_need_a_sample() -> None:
    arrays = synthetic_inputs("m", [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}])
    assert arrays["x"].shape == (1, 4) and not arrays["x"].any()
    with pytest.raises(
        DeployError,
        match=r"input 'image' is BYTES: give a smoke sample \(--smoke-input digits:image=FILE\)",
    ):
        synthetic_inputs("digits", [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}])


def row(status: str, weight: int) -> dict[str, str]:
    return {"status": status, "weight": str(weight)}


def test_a_replica_is_drained_only_when_another_takes_its_traffic() -> None:
    def both(**replicas: dict[str, str]) -> dict[tuple[str, str], dict[str, str]]:
        return {(b, n): r for b in ("triton_http", "triton_grpc") for n, r in replicas.items()}

    # One replica of two (a canary) is drained though the rollout updates only it.
    assert others_in_rotation(both(a=row("UP", 1), b=row("UP", 9)), "a")
    assert others_in_rotation(both(a=row("UP", 1), b=row("UP 1/2", 9)), "a")
    # Alone, or the other down, drained or at weight 0: it stays in rotation.
    assert not others_in_rotation(both(a=row("UP", 1)), "a")
    assert not others_in_rotation(both(a=row("UP", 1), b=row("DOWN", 9)), "a")
    assert not others_in_rotation(both(a=row("UP", 1), b=row("DRAIN", 9)), "a")
    assert not others_in_rotation(both(a=row("UP", 1), b=row("MAINT", 9)), "a")
    assert not others_in_rotation(both(a=row("UP", 1), b=row("UP", 0)), "a")
    # Up for HTTP but down for gRPC is not enough.
    rows = both(a=row("UP", 1), b=row("UP", 9))
    rows[("triton_grpc", "b")] = row("DOWN", 9)
    assert not others_in_rotation(rows, "a")
    assert not others_in_rotation({}, "a")
