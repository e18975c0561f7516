"""A native-runtime model (ONNX Runtime / LibTorch platforms, NGC containers only) gets the same
online check as a Python-backend one: the generated ensemble runs a Python-backend guard in
front of it, which refuses a NaN or an id outside the manifest's ``value_ranges`` with the
contract's 400 text. The pip tritonserver here has no onnxruntime backend, so the native model's
folder is replaced by the same model on the Python backend with its own checks taken out: what
refuses is the guard alone (the model called directly does not)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from tritonpipe.client import Client
from tritonpipe.ensembles import build_repository
from tritonpipe.errors import ClientError, InvalidArgument
from tritonpipe.repository.config import parse_pbtxt
from tritonpipe.server import ServerOptions, TritonServer


def _request(kind: int, num: float = 0.5) -> dict[str, np.ndarray]:
    return {"kind": np.array([[kind]], np.int64), "num": np.array([[num, 1.0]], np.float32)}


@pytest.fixture(scope="module")
def native_repo(contract_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("native_guard")
    model = {"export": str(contract_export), "format": "onnx", "max_batch_size": 16}
    spec = {
        "models": {"tab": {**model, "runtime": "native"}},
        "ensembles": {"scored": {"steps": ["tab"]}},
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    build_repository(root / "pipeline.yaml", root / "repo")
    return root / "repo"


def test_the_native_build_puts_a_guard_in_front(native_repo: Path) -> None:
    ensemble = parse_pbtxt((native_repo / "scored" / "config.pbtxt").read_text())
    steps = [s.model_name for s in ensemble.ensemble_scheduling.step]
    assert steps == ["scored_tab_guard", "tab"]
    assert parse_pbtxt((native_repo / "tab" / "config.pbtxt").read_text()).platform == (
        "onnxruntime_onnx"
    )
    plan = json.loads((native_repo / "scored_tab_guard" / "1" / "plan.json").read_text())
    assert plan["contract"]["ranges"] == {"kind": [0.0, 49.0]}  # the manifest's [0, 50)
    assert plan["contract"]["allow_nan"] == []
    native_inputs = dict(ensemble.ensemble_scheduling.step[1].input_map)
    assert native_inputs == {"kind": "tab_kind__checked", "num": "tab_num__checked"}


@pytest.fixture(scope="module")
def guarded_server(
    native_repo: Path, contract_export: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """The native folder replaced by the Python-backend build of the same model, its contract
    emptied: only the guard checks."""
    root = tmp_path_factory.mktemp("native_served")
    repo = root / "repo"
    shutil.copytree(native_repo, repo)
    spec = {"models": {"tab": {"export": str(contract_export), "format": "onnx",
                               "max_batch_size": 16}}}  # fmt: skip
    (root / "python.yaml").write_text(yaml.safe_dump(spec))
    build_repository(root / "python.yaml", root / "python")
    plan_path = root / "python" / "tab" / "1" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["contract"] = {}
    plan_path.write_text(json.dumps(plan))
    shutil.rmtree(repo / "tab")
    shutil.copytree(root / "python" / "tab", repo / "tab")
    options = ServerOptions(repository=repo, exit_timeout_s=5)
    with TritonServer(options, log_path=root / "tritonserver.log") as server:
        yield server


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(
    ("kind", "num", "reason"),
    [
        (50, 0.5, "input 'kind': 50 is outside [0, 49]"),
        (-1, 0.5, "input 'kind': -1 is outside [0, 49]"),
        (3, float("nan"), "input 'num': nan is not a finite number"),
    ],
)
def test_the_guard_refuses_what_a_python_model_refuses(
    protocol: str, kind: int, num: float, reason: str, guarded_server: TritonServer
) -> None:
    url = guarded_server.http_url if protocol == "http" else guarded_server.grpc_url
    with Client(url) as client:
        with pytest.raises(InvalidArgument) as info:
            client.infer("scored", _request(kind, num))
        assert reason in str(info.value)
        if kind == 50:  # the model alone, unguarded, does not judge the value by the contract
            try:
                client.infer("tab", _request(kind, num))
            except ClientError as exc:
                assert "outside [0, 49]" not in str(exc)
        good = client.infer("scored", _request(49))["score"]
        alone = client.infer("tab", _request(49))["score"]
    np.testing.assert_array_equal(good, alone)
