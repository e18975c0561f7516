"""The pipeline runtime (tritonpipe/backend/runtime.py) run directly on tiny numpy stages: what
Triton's Python model and the in-process runner both call. Nothing is faked; the stages are
real files the runtime imports, as in a generated model folder."""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tritonpipe.backend.runtime import Decl, Runner, StepFailed, _conform, _failing_frame

STAGES = """
import numpy as np
from helper import OFFSET


def double(x, factor=2):
    return {"y": x * factor}


def shift(y):
    return {"z": y + OFFSET, "mean": y.mean(axis=1, keepdims=True)}


def as_is(x=None, out=None, dtype=None):
    return {"y": x if out is None else np.asarray(out, dtype=dtype)}


def refuse(x):
    if (x < 0).any():
        raise ValueError("x holds negative values")
    return {"y": x}


def crash(x):
    return {"y": x / (1 // 0)}


def nothing(x):
    return {"other": x}


def text(x):
    return {"y": np.array([[str(v)] for v in x[:, 0]])}
"""


def _decl(name: str, dtype: str = "FP32", shape: tuple[int, ...] = (4,), tensor: str = "") -> Any:
    return {"name": name, "tensor": tensor or name, "dtype": dtype, "shape": list(shape)}


def _stage(function: str, inputs: list[Any], outputs: list[Any], **kwargs: Any) -> Any:
    return {
        "name": function,
        "kind": "stage",
        "file": "stages.py",
        "function": function,
        "kwargs": kwargs,
        "inputs": inputs,
        "outputs": outputs,
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "stages.py").write_text(STAGES)
    (tmp_path / "helper.py").write_text("OFFSET = 1.0\n")
    return tmp_path


def _runner(folder: Path, steps: list[Any], mbs: int = 8, **plan: Any) -> Runner:
    first, last = steps[0], steps[-1]
    data = {
        "name": "p",
        "max_batch_size": mbs,
        "inputs": plan.get("inputs", first["inputs"]),
        "outputs": plan.get("outputs", last["outputs"]),
        "steps": steps,
    }
    return Runner(data, folder)


def _one(folder: Path, function: str, declared: Any, mbs: int = 8, **kwargs: Any) -> Runner:
    return _runner(folder, [_stage(function, [_decl("x")], [declared], **kwargs)], mbs)


X = np.arange(12, dtype=np.float32).reshape(3, 4)


def test_two_steps_chain_through_bound_tensors(folder: Path) -> None:
    steps = [
        _stage("double", [_decl("x")], [_decl("y", tensor="doubled")], factor=3),
        _stage(
            "shift",
            [_decl("y", tensor="doubled")],
            [_decl("z", tensor="out"), _decl("mean", shape=(1,))],
        ),
    ]
    runner = _runner(folder, steps)
    assert runner.batched and runner.max_batch_size == 8 and runner.name == "p"
    out = runner.run({"x": X})
    assert sorted(out) == ["mean", "out"]
    np.testing.assert_array_equal(out["out"], X * 3 + 1)
    np.testing.assert_allclose(out["mean"], (X * 3).mean(axis=1, keepdims=True))
    runner.keep = ["doubled", "absent"]
    kept = runner.run({"x": X})
    assert sorted(kept) == ["doubled", "mean", "out"]
    np.testing.assert_array_equal(kept["doubled"], X * 3)
    assert [s.what for s in runner.steps] == ["stage 'double'", "stage 'shift'"]


def test_from_folder_reads_plan_json_and_stage_module_is_loaded_once(folder: Path) -> None:
    plan = {
        "name": "p",
        "max_batch_size": 0,
        "inputs": [_decl("x")],
        "outputs": [_decl("y")],
        "steps": [_stage("double", [_decl("x")], [_decl("y")])],
    }
    (folder / "plan.json").write_text(json.dumps(plan))
    runner = Runner.from_folder(folder)
    assert not runner.batched and runner.max_batch_size == 0
    np.testing.assert_array_equal(runner.run({"x": X[0]})["y"], X[0] * 2)
    # Not batched: a lone [4] array has no row count to check.
    (folder / "helper.py").write_text("OFFSET = 100.0\n")
    again = _runner(
        folder, [_stage("shift", [_decl("y")], [_decl("z"), _decl("mean", shape=(1,))])]
    )
    np.testing.assert_array_equal(again.run({"y": X})["z"], X + 1)  # the module already loaded


def test_decl_parse_and_describe() -> None:
    decl = Decl.parse({"name": "a", "dtype": "INT64", "shape": [-1, 3]})
    assert decl == Decl("a", "a", "INT64", (-1, 3))
    assert decl.describe() == "INT64[-1,3]"
    assert Decl.parse(_decl("a", tensor="t")).tensor == "t"


def test_unknown_step_kind(folder: Path) -> None:
    step = {**_stage("double", [_decl("x")], [_decl("y")]), "kind": "tflite"}
    with pytest.raises(ValueError, match="step 'double': unknown kind 'tflite'"):
        _runner(folder, [step])


def test_caller_error_is_invalid_and_names_the_line(folder: Path) -> None:
    runner = _one(folder, "refuse", _decl("y"))
    np.testing.assert_array_equal(runner.run({"x": X})["y"], X)
    with pytest.raises(StepFailed) as info:
        runner.run({"x": -X})
    line = STAGES.splitlines().index('        raise ValueError("x holds negative values")') + 1
    assert str(info.value) == (
        f"stage 'refuse' rejected the request: x holds negative values (at stages.py:{line} in "
        "refuse)"
    )
    assert info.value.invalid and "Traceback" in info.value.trace


def test_stage_bug_is_internal(folder: Path) -> None:
    with pytest.raises(StepFailed) as info:
        _one(folder, "crash", _decl("y")).run({"x": X})
    line = STAGES.splitlines().index('    return {"y": x / (1 // 0)}') + 1
    assert str(info.value) == (
        "stage 'crash' failed: ZeroDivisionError: integer division or modulo by zero "
        f"(at stages.py:{line} in crash)"
    )
    assert info.value.invalid is False and "ZeroDivisionError" in info.value.trace


def test_missing_output(folder: Path) -> None:
    with pytest.raises(
        StepFailed, match=r"^stage 'nothing' produced no output 'y' \(it returned 'other'\)$"
    ) as info:
        _one(folder, "nothing", _decl("y")).run({"x": X})
    assert info.value.invalid is False


@pytest.mark.parametrize(
    ("out", "dtype", "decl", "message"),
    [
        (None, None, _decl("y", "INT64"), "is declared INT64 but is float32; converting would"),
        ([[1, 2, 3, 4]] * 3, "int64", _decl("y", "BOOL"), "is declared BOOL but is int64"),
        ([[1, 2, 3, 4]] * 3, "int64", _decl("y", "UINT8"), "is declared UINT8 but is int64"),
        ([[1, 2, 3, 256]] * 3, "uint16", _decl("y", "UINT8"), "is declared UINT8 but is uint16"),
        ([[1, 2, 3, 128]] * 3, "int64", _decl("y", "INT8"), "is declared INT8 but is int64"),
        ([[1, 2, -129, 3]] * 3, "int64", _decl("y", "INT8"), "is declared INT8 but is int64"),
        (None, None, _decl("y", "BYTES"), "is declared BYTES but is float32"),
        ([[1, 2, 3, 4]] * 2, "float32", _decl("y"), "has 2 rows for 3 input rows"),
        (1.0, "float32", _decl("y"), "has a scalar for 3 input rows"),
        ([[1, 2, 3]] * 3, "float32", _decl("y"), r"has dims \[3\] but is declared FP32\[4\]"),
        ([[[1] * 4]] * 3, "float32", _decl("y"), r"has dims \[1, 4\] but is declared FP32\[4\]"),
    ],
)
def test_outputs_that_are_not_as_declared_are_refused(
    folder: Path, out: Any, dtype: str | None, decl: Any, message: str
) -> None:
    runner = _one(folder, "as_is", decl, out=out, dtype=dtype)
    with pytest.raises(StepFailed, match=f"^stage 'as_is' output 'y' {message}") as info:
        runner.run({"x": X})
    assert info.value.invalid is False


@pytest.mark.parametrize(
    ("out", "dtype", "decl", "want"),
    [
        ([[1, 2, 3, 255]] * 3, "uint16", _decl("y", "UINT8"), np.uint8),
        ([[0, 2, 3, 65535]] * 3, "uint32", _decl("y", "UINT16"), np.uint16),
        ([[-128, 0, 1, 127]] * 3, "int64", _decl("y", "INT8"), np.int8),
        ([[0.5, 1, 2, 3]] * 3, "float64", _decl("y"), np.float32),
        ([[True, False, True, True]] * 3, "bool", _decl("y", "INT32"), np.int32),
        ([[1, 2, 3, 4]] * 3, "int32", _decl("y", "INT32", (-1,)), np.int32),
        (np.zeros((3, 0)), "int64", _decl("y", "INT8", (-1,)), np.int8),
    ],
)
def test_lossless_conversions_are_made(
    folder: Path, out: Any, dtype: str, decl: Any, want: type
) -> None:
    got = _one(folder, "as_is", decl, out=out, dtype=dtype).run({"x": X})["y"]
    assert got.dtype == want
    np.testing.assert_array_equal(got, np.asarray(out, dtype=dtype))


def test_an_output_already_as_declared_is_passed_on_without_a_copy(folder: Path) -> None:
    produced = np.arange(12, dtype=np.float32).reshape(3, 4)
    step = _one(folder, "as_is", _decl("y")).steps[0]
    assert _conform(step, step.outputs[0], produced, 3) is produced
    unbatched = _one(folder, "as_is", _decl("y", shape=(3, 4)), mbs=0).steps[0]
    assert _conform(unbatched, unbatched.outputs[0], produced, None) is produced


def test_bytes_outputs_become_objects(folder: Path) -> None:
    got = _one(folder, "text", _decl("y", "BYTES", (1,))).run({"x": X})["y"]
    assert got.dtype == object and got.tolist() == [["0.0"], ["4.0"], ["8.0"]]
    raw = _one(folder, "as_is", _decl("y", "BYTES"), out=[[b"a"] * 4] * 3, dtype=None)
    assert raw.run({"x": X})["y"].dtype == object


def test_unbatched_outputs_keep_their_own_dims(folder: Path) -> None:
    runner = _one(folder, "as_is", _decl("y", shape=(2, 2)), mbs=0, out=[[1, 2], [3, 4]])
    assert runner.run({"x": X})["y"].shape == (2, 2)
    with pytest.raises(StepFailed, match=r"has dims \[3, 4\] but is declared FP32\[2,2\]"):
        _one(folder, "as_is", _decl("y", shape=(2, 2)), mbs=0).run({"x": X})


def _rows(n: int, value: float = 1.0, width: int = 4) -> dict[str, np.ndarray]:
    return {"x": np.full((n, width), value, np.float32)}


def test_dynamic_batch_is_merged_run_once_and_split_back(folder: Path) -> None:
    runner = _one(folder, "refuse", _decl("y", shape=(-1,)))
    requests = [_rows(1, 1), _rows(2, 2), _rows(3, 3, width=2), _rows(1, 4)]
    results = runner.run_requests(requests)
    assert len(results) == 4
    for request, result in zip(requests, results, strict=True):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], request["x"])
    # Widths 4 and 2 cannot merge: two executions for four requests.
    assert runner.take_timings()[0][:3] == ("refuse", 2, 4)
    assert runner.take_timings()[0][1:] == (0, 0, 0)  # taking resets the counters


def test_one_bad_request_fails_alone(folder: Path) -> None:
    runner = _one(folder, "refuse", _decl("y"))
    results = runner.run_requests([_rows(1, 1), _rows(2, -1), _rows(1, 3)])
    assert isinstance(results[1], StepFailed) and results[1].invalid
    for i in (0, 2):
        result = results[i]
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], _rows(len(result["y"]), [1, 0, 3][i])["x"])
    # The merged run failed, then each request ran alone: 1 + 3 executions, 3 + 3 requests.
    name, executions, requests, nanoseconds = runner.take_timings()[0]
    assert (name, executions, requests) == ("refuse", 4, 6) and nanoseconds > 0


def test_unbatched_model_runs_each_request_alone(folder: Path) -> None:
    runner = _one(folder, "double", _decl("y", shape=(-1, 4)), mbs=0)
    results = runner.run_requests([_rows(1, 1), _rows(2, 2)])
    assert [r["y"].tolist() for r in results if isinstance(r, dict)] == [
        [[2.0] * 4],
        [[4.0] * 4] * 2,
    ]
    assert runner.take_timings()[0][1:3] == (2, 2)


def test_two_requests_merge_and_a_batch_of_one_is_still_batched(folder: Path) -> None:
    runner = _one(folder, "double", _decl("y"), mbs=1)
    assert runner.batched
    results = runner.run_requests([_rows(1, 1), _rows(1, 2)])
    assert [r["y"].tolist() for r in results if isinstance(r, dict)] == [[[2.0] * 4], [[4.0] * 4]]
    assert runner.take_timings()[0][1:3] == (1, 2)
    with pytest.raises(StepFailed, match="has 2 rows for 1 input rows"):
        _one(folder, "as_is", _decl("y"), mbs=1, out=[[1, 2, 3, 4]] * 2).run(_rows(1))


def test_same_shapes_of_another_dtype_do_not_merge(folder: Path) -> None:
    runner = _one(folder, "double", _decl("y", "FP64"))
    results = runner.run_requests([_rows(1), {"x": np.ones((1, 4), np.float64)}])
    assert [r["y"].dtype for r in results if isinstance(r, dict)] == [np.float64, np.float64]
    assert runner.take_timings()[0][1:3] == (2, 2)


def test_empty_request_has_no_rows(folder: Path) -> None:
    runner = _runner(folder, [_stage("as_is", [], [_decl("y")], out=[[1, 2, 3, 4]])])
    with pytest.raises(StepFailed, match="has 1 rows for 0 input rows"):
        runner.run({})


def test_onnx_step(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["inp"], ["out"])],
        "g",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    step = {
        "name": "m",
        "kind": "onnx",
        "file": "m.onnx",
        "inputs": [_decl("inp")],
        "outputs": [_decl("out")],
    }
    for threads in (None, 1):
        runner = Runner(
            {
                "name": "p",
                "max_batch_size": 8,
                "inputs": [],
                "outputs": [_decl("out")],
                "steps": [step],
            },
            tmp_path,
            threads=threads,
        )
        np.testing.assert_array_equal(runner.run({"inp": X - 5})["out"], np.maximum(X - 5, 0))
        assert runner.steps[0].what == "model 'm'"


def test_torchscript_step_with_two_outputs(tmp_path: Path) -> None:
    import torch

    class Two(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return a + b, a * b

    torch.jit.save(torch.jit.script(Two()), str(tmp_path / "m.pt"))
    step = {
        "name": "m",
        "kind": "torchscript",
        "file": "m.pt",
        "inputs": [_decl("a"), _decl("b")],
        "outputs": [_decl("sum"), _decl("product")],
    }
    plan = {"name": "p", "max_batch_size": 8, "inputs": [], "outputs": step["outputs"]}
    runner = Runner({**plan, "steps": [step]}, tmp_path, threads=1)
    out = runner.run({"a": X, "b": X + 1})
    np.testing.assert_array_equal(out["sum"], X + X + 1)
    np.testing.assert_array_equal(out["product"], X * (X + 1))


def test_lossy_conversion_message_in_full(folder: Path) -> None:
    with pytest.raises(StepFailed) as info:
        _one(folder, "as_is", _decl("y", "INT64")).run({"x": X})
    assert str(info.value) == (
        "stage 'as_is' output 'y' is declared INT64 but is float32; converting would lose data "
        "(return the declared dtype)"
    )


def test_step_failed_has_no_trace_unless_given() -> None:
    assert StepFailed("m", invalid=True).trace == ""


LIBRARY = "def fail(x):\n    return x.reshape(5)\n"
CALLER = """import numpy as np
from libsp import fail as sp
from libdp import fail as dp


def in_site(x):
    return sp(x)


def in_dist(x):
    return dp(x)


def in_numpy(x):
    return np.reshape(x, (5,))
"""


def test_failing_frame_is_the_deepest_outside_installed_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Packages found outside sys.prefix (a user site, a conda-pack environment) count as
    # installed by the folder name: the frame reported is the caller's own line.
    for where, module in (("site-packages", "libsp"), ("dist-packages", "libdp")):
        (tmp_path / where).mkdir()
        (tmp_path / where / f"{module}.py").write_text(LIBRARY)
        monkeypatch.syspath_prepend(str(tmp_path / where))
    (tmp_path / "mine_frames.py").write_text(CALLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mine_frames  # type: ignore[import-not-found]

    lines = CALLER.splitlines()
    for function, call in (
        ("in_site", "    return sp(x)"),
        ("in_dist", "    return dp(x)"),
        ("in_numpy", "    return np.reshape(x, (5,))"),
    ):
        with pytest.raises(ValueError) as info:
            getattr(mine_frames, function)(X)
        assert _failing_frame(info.value) == f"mine_frames.py:{lines.index(call) + 1} in {function}"


def test_failing_frame_inside_a_library_only_or_nowhere() -> None:
    try:
        json.loads("{")
    except ValueError as exc:
        inner = exc.with_traceback(exc.__traceback__.tb_next if exc.__traceback__ else None)
        where = _failing_frame(inner)
    assert where.startswith("decoder.py:") and where.endswith(" in raw_decode")
    assert _failing_frame(ValueError("never raised")) == "unknown location"


NEIGHBOUR = "def f(x):\n    return {{'y': x + {value}}}\n"


def test_a_stage_imports_its_own_neighbour_first_and_is_loaded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"neighbour_{uuid.uuid4().hex}"
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / f"{name}.py").write_text(NEIGHBOUR.format(value=100))
    sys.path.insert(0, str(decoy))
    own = tmp_path / "own"
    own.mkdir()
    (own / f"{name}.py").write_text(NEIGHBOUR.format(value=1))
    (own / "st.py").write_text(f"from {name} import f\n\n\ndef g(x):\n    return f(x)\n")
    (own / "st2.py").write_text("def g(x):\n    return {'y': x}\n")
    step = {**_stage("g", [_decl("x")], [_decl("y")]), "file": "st.py"}
    np.testing.assert_array_equal(_runner(own, [step]).run({"x": X})["y"], X + 1)
    assert sys.path[0] == str(own)
    # The same file again is the module already loaded, even if the file changed since.
    (own / "st.py").write_text("def g(x):\n    return {'y': x * 0}\n")
    np.testing.assert_array_equal(_runner(own, [step]).run({"x": X})["y"], X + 1)
    _runner(own, [{**step, "file": "st2.py"}])
    assert sys.path.count(str(own)) == 1
    sys.modules.pop(name, None)


def test_stages_of_the_same_name_in_two_folders_are_two_modules(tmp_path: Path) -> None:
    for factor in (2, 3):
        (tmp_path / str(factor)).mkdir()
        stage = f"from dataclasses import dataclass\n\n\n@dataclass\nclass K:\n    k: int = {factor}\n\n\ndef g(x):\n    return {{'y': x * K().k}}\n"
        (tmp_path / str(factor) / "same.py").write_text(stage)
    for factor in (2, 3):
        step = {**_stage("g", [_decl("x")], [_decl("y")]), "file": "same.py"}
        out = _runner(tmp_path / str(factor), [step]).run({"x": X})["y"]
        np.testing.assert_array_equal(out, X * factor)


def test_a_file_python_cannot_import(folder: Path) -> None:
    (folder / "stages.txt").write_text("")
    with pytest.raises(RuntimeError, match=f"^cannot import {re.escape(str(folder))}/stages.txt$"):
        _runner(folder, [{**_stage("double", [_decl("x")], [_decl("y")]), "file": "stages.txt"}])


def test_a_stage_without_kwargs(folder: Path) -> None:
    step = _stage("double", [_decl("x")], [_decl("y")])
    del step["kwargs"]
    np.testing.assert_array_equal(_runner(folder, [step]).run({"x": X})["y"], X * 2)


def test_runner_declares_its_inputs_and_sums_step_time(folder: Path) -> None:
    (folder / "slow.py").write_text(
        "import time\n\n\ndef s(x):\n    time.sleep(0.02)\n    return {'y': x}\n"
    )
    runner = _runner(folder, [{**_stage("s", [_decl("x")], [_decl("y")]), "file": "slow.py"}])
    assert runner.inputs == [Decl("x", "x", "FP32", (4,))]
    runner.run({"x": X})
    runner.run({"x": X})
    ((what, executions, requests, ns),) = runner.take_timings()
    assert (what, executions, requests) == ("s", 2, 2)
    assert 0.04e9 <= ns < 1e9


def test_a_failing_lone_request_runs_once(folder: Path) -> None:
    runner = _one(folder, "refuse", _decl("y"))
    (out,) = runner.run_requests([_rows(2, -1.0)])
    assert isinstance(out, StepFailed) and out.invalid
    ((_, executions, requests, _),) = runner.take_timings()
    assert (executions, requests) == (1, 1)  # not merged first, then run again alone


def _scripted(tmp_path: Path, module: Any, outputs: list[str], **options: Any) -> Runner:
    import torch

    torch.jit.save(torch.jit.script(module), str(tmp_path / "m.pt"))
    step = {
        "name": "m",
        "kind": "torchscript",
        "file": "m.pt",
        "inputs": [_decl("a")],
        "outputs": [_decl(n) for n in outputs],
    }
    plan = {"name": "p", "max_batch_size": 8, "inputs": [_decl("a")], "outputs": step["outputs"]}
    (tmp_path / "plan.json").write_text(json.dumps({**plan, "steps": [step]}))
    return Runner.from_folder(tmp_path, **options)


def test_torchscript_single_tensor_dict_and_too_many_outputs(tmp_path: Path) -> None:
    import torch

    class One(torch.nn.Module):
        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return a * 2

    class Named(torch.nn.Module):
        def forward(self, a: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"neg": -a, "twice": a * 2}

    class Three(torch.nn.Module):
        def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return a, a, a

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        one = _scripted(tmp_path, One(), ["y"], threads=1)
        assert torch.get_num_threads() == 1  # the options reach the loader
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one.run({"a": X})["y"], X * 2)
    named = _scripted(tmp_path, Named(), ["twice", "neg"]).run({"a": X})
    np.testing.assert_array_equal(named["twice"], X * 2)
    np.testing.assert_array_equal(named["neg"], -X)
    with pytest.raises(StepFailed, match=r"^model 'm' failed \(ValueError\)") as info:
        _scripted(tmp_path, Three(), ["y", "z"]).run({"a": X})
    assert info.value.detail.startswith("ValueError: zip")  # for the log, not the caller
