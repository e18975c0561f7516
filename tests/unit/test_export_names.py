"""A new user's own model through the real exporter: their tensor names survive the dynamo
exporter, the graph is checked before parity, and a failed export writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tritonpipe.errors import ExportError, ParityError
from tritonpipe.export import export, onnx_graph
from tritonpipe.tensors import parse_input_spec

TABULAR = Path(__file__).resolve().parent.parent / "assets" / "newuser" / "tabular.py"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonpipe.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_tabular_model_exports_with_the_users_names(tmp_path: Path) -> None:
    out = tmp_path / "tab_export"
    result = cli(
        *("export", f"{TABULAR}:build", "--input", "num:FP32:12", "--input", "cat:INT64:3"),
        *("--output", "score", "--output", "embedding", "--out", str(out)),
        *("--format", "onnx", "--format", "torchscript"),
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [v.name for v in graph.input] == ["num", "cat"]
    assert [v.name for v in graph.output] == ["score", "embedding"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["value_ranges"] == {"cat": [0, 50]}  # from the model's nn.Embedding(50, 4)
    assert set(manifest["artifacts"]) == {"onnx", "torchscript"}
    assert all(p["passed"] for outs in manifest["parity"].values() for p in outs.values())
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]
    # What the user asked for by name answers by name.
    session = ort.InferenceSession(str(out / "model.onnx"))
    feed = {"num": np.zeros((2, 12), np.float32), "cat": np.array([[0, 1, 49]] * 2)}
    score, embedding = session.run(["score", "embedding"], feed)
    assert score.shape == (2, 1) and embedding.shape == (2, 16)
    assert "batch 1, 7, 64" in result.stdout and "wrote model.onnx, model.pt" in result.stdout


def _graph_with_a_node_named_like_an_input() -> onnx.ModelProto:
    """x -> Relu -> 'cat' -> Neg -> out0, and x returned as it is (out1): the inner value
    'cat' clashes with the user's input name, and an output that is an input needs its own."""
    nodes = [helper.make_node("Relu", ["x0"], ["cat"]), helper.make_node("Neg", ["cat"], ["y0"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x0", TensorProto.FLOAT, [None, 3])],
        [
            helper.make_tensor_value_info("y0", TensorProto.FLOAT, [None, 3]),
            helper.make_tensor_value_info("x0", TensorProto.FLOAT, [None, 3]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_apply_names_moves_inner_values_aside(tmp_path: Path) -> None:
    model = _graph_with_a_node_named_like_an_input()
    onnx_graph.apply_names(model, ["cat"], ["embedding", "same"])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    onnx_graph.check(path)
    session = ort.InferenceSession(str(path))
    x = np.array([[-1.0, 0.0, 2.0]], np.float32)
    embedding, same = session.run(["embedding", "same"], {"cat": x})
    np.testing.assert_array_equal(embedding, -np.maximum(x, 0))
    np.testing.assert_array_equal(same, x)


def test_a_graph_that_defines_a_name_twice_is_refused_before_parity(tmp_path: Path) -> None:
    model = _graph_with_a_node_named_like_an_input()
    model.graph.input[0].name = "cat"  # what the exporter wrote when given the user's names
    model.graph.node[0].input[0] = "cat"
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match="(checker refuses|onnxruntime cannot load).*cat"):
        onnx_graph.check(path)


def test_export_checks_the_graph_it_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the renaming, the graph the exporter writes is refused by the check, as a
    message naming the format, before any parity run."""

    def clash(model: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> None:
        old = model.graph.input[1].name  # the exporter's own 'cat' (a Concat) stays
        model.graph.input[1].name = "cat"
        for node in model.graph.node:
            node.input[:] = ["cat" if i == old else i for i in node.input]

    monkeypatch.setattr(onnx_graph, "apply_names", clash)
    with pytest.raises(ExportError) as info:
        export(
            f"{TABULAR}:build",
            [parse_input_spec("num:FP32:12"), parse_input_spec("cat:INT64:3")],
            tmp_path / "out",
            formats=["onnx"],
            output_names=["score", "embedding"],
            max_batch_size=8,
        )
    assert str(info.value).startswith("onnx export failed: ")
    assert "cat" in str(info.value) and "parity" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_failed_format_writes_nothing_and_says_which(tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = cli("export", f"{TABULAR}:constant_in_trace", "--input", "x:FP32:3", "--out", str(out))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "torchscript export failed: torch.jit.trace baked values" in result.stderr
    assert f"nothing was written to {out} (onnx exported fine)" in result.stderr
    assert not out.exists()
    # Into a folder holding an earlier export: it is left as it was.
    out.mkdir()
    (out / "model.onnx").write_bytes(b"earlier")
    (out / "manifest.json").write_text("{}")
    again = cli("export", f"{TABULAR}:constant_in_trace", "-i", "x:FP32:3", "--out", str(out))
    assert again.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"earlier"


def test_parity_names_the_one_output_that_is_wrong(tmp_path: Path) -> None:
    """Two outputs; only the second is exported wrong (a value the trace froze): parity fails
    naming it, and the first passes."""
    with pytest.raises(ParityError) as info:
        export(
            f"{TABULAR}:wrong_second_output",
            [parse_input_spec("x:FP32:3")],
            tmp_path,
            formats=["torchscript"],
            output_names=["first", "second"],
            max_batch_size=8,
            exporter="legacy",
        )
    message = str(info.value)
    assert "torchscript output 'second'" in message
    assert "output 'first'" not in message
    parity = json.loads((tmp_path / "manifest.json").read_text())["parity"]["torchscript"]
    assert parity["first"]["passed"] and not parity["second"]["passed"]


def test_a_failing_capture_prints_one_error_line(tmp_path: Path) -> None:
    """torch's fake-tensor logger prints a traceback of its own when a capture fails; the
    user sees only the error, after the export's progress lines."""
    result = cli("export", f"{TABULAR}:mismatched", "-i", "x:FP32:3", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    *steps, error = result.stderr.strip().splitlines()
    assert steps == [
        "capturing the model with torch.export",
        "running the eager model at 3 input shapes",
    ], result.stderr
    assert error.startswith("error: the eager model fails"), result.stderr
