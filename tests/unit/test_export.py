import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tritonpipe.errors import ExportError, ParityError
from tritonpipe.export import Manifest, export
from tritonpipe.export.manifest import sha256
from tritonpipe.export.parity import compare, parity_batch_sizes
from tritonpipe.tensors import parse_input_spec

MODELS = Path(__file__).resolve().parent.parent / "assets" / "models.py"


def test_multi_input_multi_output_export(tmp_path: Path) -> None:
    inputs = [parse_input_spec("a:FP32:4"), parse_input_spec("b:FP32:-1=5")]
    manifest = export(f"{MODELS}:two_in_two_out", inputs, tmp_path, max_batch_size=16)
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert [o["name"] for o in data["outputs"]] == ["scaled", "pooled"]
    assert data["outputs"][1] == {"name": "pooled", "dtype": "FP32", "shape": [1]}
    assert data["inputs"][1]["shape"] == [-1]
    assert data["opset"] >= 17 and data["torch_version"].startswith("2.")
    for fmt, file in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
        assert data["artifacts"][fmt] == {"file": file, "sha256": sha256(tmp_path / file)}
        for out in ("scaled", "pooled"):
            parity = data["parity"][fmt][out]
            assert parity["passed"] and parity["batch_sizes"] == [1, 7, 16]
            assert parity["max_abs_error"] < 1e-4
    assert Manifest.read(tmp_path).outputs == manifest.outputs
    # The ONNX file really has a dynamic batch axis and a dynamic dim on b.
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    a = np.ones((3, 4), np.float32)
    b = np.ones((3, 9), np.float32)
    scaled, pooled = session.run(None, {"a": a, "b": b})
    assert scaled.shape == (3, 4) and pooled.tolist() == [[9.0]] * 3


def test_parity_failure_names_output_and_error(tmp_path: Path) -> None:
    with pytest.raises(ParityError) as info:
        export(
            f"{MODELS}:diverging",
            [parse_input_spec("x:FP32:3")],
            tmp_path,
            formats=["onnx"],
            output_names=["shifted"],
            max_batch_size=8,
        )
    message = str(info.value)
    assert "onnx output 'shifted'" in message and "max abs error" in message
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["parity"]["onnx"]["shifted"]["passed"] is False


def test_nan_output_fails(tmp_path: Path) -> None:
    with pytest.raises(ParityError, match="contains NaN or Inf"):
        export(f"{MODELS}:nan", [parse_input_spec("x:FP32:3")], tmp_path, formats=["torchscript"])


def test_loose_tolerance_lets_divergence_pass(tmp_path: Path) -> None:
    manifest = export(
        f"{MODELS}:diverging",
        [parse_input_spec("x:FP32:3")],
        tmp_path,
        formats=["torchscript"],
        atol=1e6,
        max_batch_size=4,
    )
    assert manifest.parity["torchscript"]["output0"].passed


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (f"{MODELS}:not_a_module", "not torch.nn.Module"),
        (f"{MODELS}:missing", "has no function"),
        ("nowhere.py:f", "not found"),
        ("no_colon", "expected 'path/to/file.py:function'"),
    ],
)
def test_bad_factory(tmp_path: Path, factory: str, message: str) -> None:
    with pytest.raises(ExportError if "Module" in message else Exception, match=message):
        export(factory, [parse_input_spec("x:FP32:3")], tmp_path)


def test_parity_helpers() -> None:
    assert parity_batch_sizes(64) == (1, 7, 64)
    assert parity_batch_sizes(4) == (1, 4)
    ok = compare(np.ones(3), np.ones(3) + 1e-6, atol=1e-4, rtol=0)
    assert ok[2] and ok[0] == pytest.approx(1e-6)
    assert not compare(np.ones(3), np.array([1, 1, np.inf]), atol=1, rtol=1)[2]
    assert not compare(np.ones(3), np.ones(4), atol=1, rtol=1)[2]
