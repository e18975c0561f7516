import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.conftest import ENCODER
from tritonpipe.errors import ExportError, ParityError, SpecError, TritonPipeError
from tritonpipe.export import Manifest, export, parse_export_input
from tritonpipe.export.formats import write_torchscript
from tritonpipe.export.inputs import dim_sizes
from tritonpipe.export.parity import compare, parity_batch_sizes
from tritonpipe.loading import load_function
from tritonpipe.tensors import parse_input_spec

MODELS = Path(__file__).resolve().parent.parent / "assets" / "models.py"


def test_multi_input_multi_output_export(tmp_path: Path) -> None:
    inputs = [parse_input_spec("a:FP32:4"), parse_input_spec("b:FP32:-1=5")]
    manifest = export(f"{MODELS}:two_in_two_out", inputs, tmp_path, max_batch_size=16)
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert [o["name"] for o in data["outputs"]] == ["scaled", "pooled"]
    assert data["outputs"][1] == {"name": "pooled", "dtype": "FP32", "shape": [1]}
    assert data["inputs"][1]["shape"] == [-1]
    import onnx

    opsets = {o.domain: o.version for o in onnx.load(str(tmp_path / "model.onnx")).opset_import}
    assert opsets[""] == data["opset"] == 18  # the default domain's opset, read from the file
    assert data["torch_version"].startswith("2.")
    assert data["exporter"] == "dynamo"
    for fmt, file in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
        assert data["artifacts"][fmt]["file"] == file
        digest = hashlib.sha256((tmp_path / file).read_bytes()).hexdigest()
        assert data["artifacts"][fmt]["sha256"] == digest
        for out in ("scaled", "pooled"):
            parity = data["parity"][fmt][out]
            assert parity["passed"] and parity["batch_sizes"] == [1, 7, 16]
            assert parity["max_abs_error"] < 1e-4
    assert data["artifacts"]["onnx"]["exporter"] == "torch.onnx.export(dynamo=True)"
    # b's dynamic dim ran at its sample (5), at 1 and at 8, each at every batch size.
    tried = {(s["b"][0], s["b"][1]) for s in data["parity_shapes"]}
    assert tried == {(b, n) for b in (1, 7, 16) for n in (1, 5, 8)}
    assert Manifest.read(tmp_path).outputs == manifest.outputs
    # The ONNX file really has a dynamic batch axis and a dynamic dim on b.
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    a = np.ones((3, 4), np.float32)
    b = np.ones((3, 9), np.float32)
    scaled, pooled = session.run(None, {"a": a, "b": b})
    assert scaled.shape == (3, 4) and pooled.tolist() == [[9.0]] * 3


def test_encoder_passes_parity_at_every_length_in_all_formats(encoder_export: Path) -> None:
    data = json.loads((encoder_export / "manifest.json").read_text())
    assert set(data["artifacts"]) == {"onnx", "torchscript", "aoti"}
    assert data["artifacts"]["aoti"]["file"] == "model.pt2"
    assert data["artifacts"]["aoti"]["device"] == "cpu"
    assert {tuple(s["tokens"]) for s in data["parity_shapes"]} == {
        (b, n) for b in (1, 7, 64) for n in (1, 24, 37)
    }
    for fmt in ("onnx", "torchscript", "aoti"):
        assert all(p["passed"] for p in data["parity"][fmt].values())
    # Token ids were drawn from the model's embedding (1000 rows), not [0, 10).
    assert data["value_ranges"] == {"tokens": [0, 1000]}
    assert data["outputs"][1] == {"name": "hidden", "dtype": "FP32", "shape": [-1, 32]}


def test_aoti_package_runs_at_a_length_parity_did_not_try(encoder_export: Path) -> None:
    package = torch._inductor.aoti_load_package(str(encoder_export / "model.pt2"))
    tokens = torch.randint(0, 1000, (5, 53))
    with torch.no_grad():
        want = load_function(f"{ENCODER}:encoder")()(tokens)
    logits, hidden = package(tokens)
    assert hidden.shape == (5, 53, 32)
    torch.testing.assert_close(logits, want["logits"], atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(hidden, want["hidden"], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_dims_the_model_needs_equal_vary_together(tmp_path: Path, exporter: str) -> None:
    manifest = export(
        f"{MODELS}:masked_mean",
        [parse_export_input("tokens:INT64:-1=12"), parse_export_input("mask:FP32:-1=12")],
        tmp_path,
        max_batch_size=8,
        exporter=exporter,
    )
    assert all(s["tokens"] == s["mask"] for s in manifest.shapes)
    assert {s["tokens"][1] for s in manifest.shapes} == {1, 12, 19}
    assert manifest.value_ranges == {"tokens": [0, 30]}
    assert all(p.passed for outs in manifest.parity.values() for p in outs.values())


def test_legacy_onnx_exporter_that_bakes_the_length_is_caught(tmp_path: Path) -> None:
    """The issue's case: tracing bakes the sample length into a Reshape; parity at 1 finds it."""
    with pytest.raises(ExportError) as info:
        export(
            f"{ENCODER}:encoder",
            [parse_export_input("tokens:INT64:-1=24")],
            tmp_path,
            formats=["onnx"],
            exporter="legacy",
            max_batch_size=8,
        )
    message = str(info.value)
    assert message.startswith("the onnx export: input 'tokens' dim 1 is declared dynamic")
    assert "sizes that worked: [24]; at size 1 (batch 1)" in message
    assert "Reshape" in message


def test_model_that_bakes_a_length_fails_with_input_dim_and_sizes(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export(
            f"{MODELS}:baked_length",
            [parse_export_input("tokens:INT64:-1=24")],
            tmp_path,
            formats=["onnx", "torchscript", "aoti"],
        )
    message = str(info.value)
    assert "input 'tokens' dim 1 is declared dynamic but does not really vary" in message
    assert (
        "sizes that worked: [24]; at size 1 (batch 1): RuntimeError: shape '[1, 24, 4, 8]'"
        in message
    )
    assert not (tmp_path / "model.pt2").exists()


def test_shape_branch_is_reported_at_the_users_line(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export(f"{MODELS}:length_branch", [parse_export_input("x:FP32:-1=24")], tmp_path)
    message = str(info.value)
    assert (
        "input 'x' dim 1 is declared dynamic, but torch.export found the model fixes it" in message
    )
    line = next(
        i for i, t in enumerate(MODELS.read_text().splitlines(), 1) if "x.shape[1] > 16" in t
    )
    assert f"{MODELS}:{line} `if x.shape[1] > 16:`" in message
    # torch's own names for the dim are translated into the input's.
    assert "guard 17 <= x.shape[1]" in message and "L['args']" not in message


def test_value_read_from_a_tensor_is_reported_at_the_users_line(tmp_path: Path) -> None:
    line = next(
        i for i, t in enumerate(MODELS.read_text().splitlines(), 1) if "float(x.mean())" in t
    )
    with pytest.raises(ExportError, match=f"branches on tensor values at {MODELS}:{line}"):
        export(f"{MODELS}:diverging", [parse_input_spec("x:FP32:3")], tmp_path, formats=["onnx"])


def test_strict_torchscript_trace_refuses_a_baked_value(tmp_path: Path) -> None:
    """Behind torch.export's check, the tracer's own warnings from the model's code are refused."""
    model = load_function(f"{MODELS}:diverging")()
    line = next(
        i for i, t in enumerate(MODELS.read_text().splitlines(), 1) if "float(x.mean())" in t
    )
    with pytest.raises(
        ExportError, match=f"baked values .*\n  {MODELS}:{line}: Converting a tensor"
    ):
        write_torchscript(model, (torch.ones(2, 3),), tmp_path / "model.pt", strict=True)
    assert write_torchscript(model, (torch.ones(2, 3),), tmp_path / "model.pt", strict=False)


def test_legacy_torchscript_trace_bakes_silently_and_parity_catches_it(tmp_path: Path) -> None:
    with pytest.raises(ParityError) as info:
        export(
            f"{MODELS}:diverging",
            [parse_input_spec("x:FP32:3")],
            tmp_path,
            formats=["onnx", "torchscript"],
            output_names=["shifted"],
            max_batch_size=8,
            exporter="legacy",
        )
    message = str(info.value)
    assert "onnx output 'shifted'" in message and "torchscript output 'shifted'" in message
    assert "max abs error" in message and "first off at x[" in message
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["exporter"] == "legacy" and manifest["opset"] == 17
    assert manifest["artifacts"]["onnx"]["exporter"] == "torch.onnx.export(dynamo=False)"
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
        exporter="legacy",
    )
    assert manifest.parity["torchscript"]["output0"].passed


def test_integer_inputs_default_to_zero_to_ten_without_an_embedding(tmp_path: Path) -> None:
    manifest = export(
        f"{MODELS}:int_sum", [parse_export_input("x:INT64:3")], tmp_path, formats=["onnx"]
    )
    assert manifest.value_ranges == {"x": [0, 10]}
    ranged = export(
        f"{MODELS}:int_sum", [parse_export_input("x:INT64:3:-5..5")], tmp_path, formats=["onnx"]
    )
    assert ranged.value_ranges == {"x": [-5, 5]}


def test_parse_export_input() -> None:
    parsed = parse_export_input("tokens:INT64:-1=24:0..1000")
    assert parsed.spec.shape == (-1,) and parsed.sample == (24,)
    assert parsed.value_range == (0, 1000)
    assert parse_export_input("x:FP32:1,8,8").value_range is None
    with pytest.raises(SpecError, match="integer inputs only"):
        parse_export_input("x:FP32:3:0..4")
    with pytest.raises(SpecError, match="range 5..5 is empty"):
        parse_export_input("x:INT32:3:5..5")


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
    with pytest.raises(TritonPipeError, match=message) as info:
        export(factory, [parse_input_spec("x:FP32:3")], tmp_path)
    # A model that is not a Module is an export problem; a factory that cannot be found is a
    # problem in what the user wrote.
    assert type(info.value) is (ExportError if "Module" in message else SpecError)


def test_bad_arguments(tmp_path: Path) -> None:
    x = [parse_input_spec("x:FP32:3")]
    with pytest.raises(ExportError, match=r"formats \['tflite'\]: choose from"):
        export(f"{MODELS}:nan", x, tmp_path, formats=["tflite"])
    with pytest.raises(ExportError, match="exporter 'jit': choose from"):
        export(f"{MODELS}:nan", x, tmp_path, exporter="jit")


def test_parity_helpers() -> None:
    assert parity_batch_sizes(64) == (1, 7, 64)
    assert parity_batch_sizes(4) == (1, 4)
    assert dim_sizes(24) == (24, 1, 37)
    assert dim_sizes(2) == (2, 1, 5)
    assert dim_sizes(1) == (1, 2)
    ok = compare(np.ones(3), np.ones(3) + 1e-6, atol=1e-4, rtol=0)
    assert ok[2] and ok[0] == pytest.approx(1e-6)
    assert not compare(np.ones(3), np.array([1, 1, np.inf]), atol=1, rtol=1)[2]
    assert not compare(np.ones(3), np.ones(4), atol=1, rtol=1)[2]
