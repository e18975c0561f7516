"""The spec compiler (tritonpipe/ensembles/plan.py) on small specs: stage files written here and
an export folder whose manifest.json is written by hand (the compiler reads the manifest and
checks the artifact exists; it never opens the model). Fast enough for `make mutation`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tritonpipe.ensembles.plan import (
    EnsemblePlan,
    compile_ensemble,
    fused_serving,
    group_io,
    holders,
    plan_json,
    resolve_steps,
    served_models,
    units,
)
from tritonpipe.ensembles.spec import PipelineSpec
from tritonpipe.errors import SpecError

STAGES = """
def pre(x, scale=1.0):
    return {"y": x * scale}


def mid(y):
    return {"z": y, "w": y}


def post(z):
    return {"out": z}


def anything(**tensors):
    return {"out": next(iter(tensors.values()))}
"""


def _t(name: str, dtype: str = "FP32", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape or [4]}


def _stage(function: str, inputs: list[Any], outputs: list[Any], **more: Any) -> dict[str, Any]:
    return {"function": f"stages.py:{function}", "inputs": inputs, "outputs": outputs, **more}


def _manifest(folder: Path, **changes: Any) -> None:
    folder.mkdir(exist_ok=True)
    passed = {"max_abs_error": 0.0, "max_rel_error": 0.0, "batch_sizes": [1, 16], "passed": True}
    data = {
        "inputs": [_t("z")],
        "outputs": [_t("score", shape=[1])],
        "max_batch_size": 16,
        "torch_version": "2",
        "factory": "m.py:f",
        "tolerance": {"atol": 1e-5, "rtol": 1e-5},
        "artifacts": {
            "onnx": {"file": "model.onnx"},
            "torchscript": {"file": "model.pt"},
            "aoti": {"file": "model.pt2"},
        },
        "parity": {"onnx": {"score": passed}, "torchscript": {"score": passed}},
        **changes,
    }
    (folder / "manifest.json").write_text(json.dumps(data))
    for artifact in data["artifacts"].values():
        (folder / artifact["file"]).write_bytes(b"")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "stages.py").write_text(STAGES)
    _manifest(tmp_path / "export")
    return tmp_path


STAGE_SPECS = {
    "pre": _stage("pre", [_t("x")], [_t("y")], parameters={"scale": 2.0}, max_batch_size=32),
    "mid": _stage(
        "mid",
        [_t("y")],
        [_t("z"), _t("w")],
        max_batch_size=8,
        dynamic_batching={"max_queue_delay_microseconds": 300},
        instance_groups=[{"count": 3}],
    ),
    "post": _stage(
        "post",
        [_t("z")],
        [_t("out")],
        max_batch_size=16,
        dynamic_batching={"max_queue_delay_microseconds": 100},
    ),
}


def _spec(ensembles: dict[str, Any], models: dict[str, Any] | None = None, **stages: Any) -> Any:
    return PipelineSpec.model_validate(
        {"stages": {**STAGE_SPECS, **stages}, "models": models or {}, "ensembles": ensembles}
    )


def _compile(base: Path, name: str, spec: PipelineSpec, runtime: str | None = None) -> Any:
    return compile_ensemble(name, spec.ensembles[name], resolve_steps(spec, base, runtime))


CHAIN = {"steps": ["pre", "mid", "post"], "outputs": ["out", "w"]}


def test_a_chain_binds_tensors_and_defaults_the_batch_to_its_smallest(base: Path) -> None:
    spec = _spec({"e": CHAIN})
    steps = resolve_steps(spec, base)
    assert steps["pre"].source == (base / "stages.py").resolve()
    assert (steps["pre"].function, steps["pre"].kwargs, steps["pre"].kind) == (
        "pre",
        {"scale": 2.0},
        "stage",
    )
    assert steps["pre"].what == "stage 'pre'" and not steps["pre"].native
    plan = compile_ensemble("e", spec.ensembles["e"], steps)
    assert plan.max_batch_size == 8
    assert [t.name for t in plan.inputs] == ["x"]
    assert [(t.name, t.shape) for t in plan.outputs] == [("out", (4,)), ("w", (4,))]
    assert [(b.input_map, b.output_map) for b in plan.steps] == [
        ({"x": "x"}, {"y": "y"}),
        ({"y": "y"}, {"z": "z", "w": "w"}),
        ({"z": "z"}, {"out": "out"}),
    ]
    assert plan.groups == [[0, 1, 2]] and plan.fused() and plan.serving is None
    assert units(plan) == [("e", [0, 1, 2])]


def test_declared_batch_size_and_serving_are_kept(base: Path) -> None:
    serving = {"max_batch_size": 2, "dynamic_batching": None}
    spec = _spec({"e": {**CHAIN, "max_batch_size": 4, "serving": serving}})
    plan = _compile(base, "e", spec)
    assert plan.max_batch_size == 4
    assert fused_serving(plan, [0, 1, 2]).max_batch_size == 2


def test_step_maps_rename_tensors(base: Path) -> None:
    spec = _spec(
        {
            "e": {
                "steps": [
                    {"model": "pre", "outputs": {"y": "scaled"}},
                    {"model": "mid", "inputs": {"y": "scaled"}, "outputs": {"z": "zz"}},
                    {"model": "post", "inputs": {"z": "zz"}},
                ],
                "outputs": ["out", "w"],
            }
        }
    )
    plan = _compile(base, "e", spec)
    assert plan.steps[1].input_map == {"y": "scaled"}
    assert plan.steps[1].output_map == {"z": "zz", "w": "w"}
    assert plan.steps[2].input_map == {"z": "zz"}


def test_default_outputs_are_the_last_steps(base: Path) -> None:
    spec = _spec({"e": {"steps": ["pre", "post"]}}, post=_stage("post", [_t("y")], [_t("out")]))
    spec = _spec({"e": {"steps": ["pre", {"model": "post", "inputs": {"z": "y"}}]}})
    plan = _compile(base, "e", spec)
    assert [t.name for t in plan.outputs] == ["out"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            {"model": "mid", "inputs": {"q": "y"}},
            r"^ensembles.e.steps\[1\].inputs: 'mid' has no input 'q' \(it has y\)$",
        ),
        (
            {"model": "mid", "outputs": {"q": "y"}},
            r"^ensembles.e.steps\[1\].outputs: 'mid' has no output 'q' \(it has z, w\)$",
        ),
        ("other", r"^ensembles.e.steps\[1\]: 'other' is an ensemble; steps are stages or models$"),
    ],
)
def test_bad_step_references(base: Path, ref: Any, message: str) -> None:
    spec = _spec({"e": {"steps": ["pre", ref]}, "other": {"steps": ["pre"]}})
    with pytest.raises(SpecError, match=message):
        _compile(base, "e", spec)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (_t("y", "FP64"), r"FP64\[4\]"),
        (_t("y", shape=[5]), r"FP32\[5\]"),
    ],
)
def test_edges_must_agree(base: Path, tensor: Any, message: str) -> None:
    spec = _spec({"e": {"steps": ["pre", "post"]}}, post=_stage("anything", [tensor], [_t("out")]))
    with pytest.raises(
        SpecError,
        match=r"^ensembles.e.steps\[1\] \(tensor 'y'\): stage 'pre' output 'y' is FP32\[4\] but "
        rf"stage 'post' input 'y' wants {message}$",
    ):
        _compile(base, "e", spec)


def test_edge_with_a_dynamic_dim_is_fine_and_a_declared_input_read_twice(base: Path) -> None:
    spec = _spec(
        {"e": {"steps": ["pre", "post"], "inputs": ["x", "z"], "outputs": ["out", "y"]}},
        post=_stage("anything", [_t("z", shape=[-1])], [_t("out")]),
        pre=_stage("anything", [_t("x"), _t("z", shape=[-1])], [_t("y")]),
    )
    plan = _compile(base, "e", spec)
    assert [t.name for t in plan.inputs] == ["x", "z"]
    assert plan.inputs[1].shape == (-1,)


def test_stage_must_take_every_input_and_parameter(base: Path) -> None:
    spec = _spec({}, pre=_stage("pre", [_t("x")], [_t("y")], parameters={"bias": 1}))
    with pytest.raises(
        SpecError, match=r"^stages.pre: function 'pre' in .*stages.py takes no argument 'bias'$"
    ):
        resolve_steps(spec, base)
    spec = _spec({}, pre=_stage("pre", [_t("q")], [_t("y")]))
    with pytest.raises(SpecError, match="takes no argument 'q'$"):
        resolve_steps(spec, base)
    # A function taking **kwargs takes anything.
    spec = _spec({}, pre=_stage("anything", [_t("q")], [_t("out")], parameters={"b": 1}))
    assert resolve_steps(spec, base)["pre"].kwargs == {"b": 1}


MODEL = {"export": "export", "format": "onnx", "max_batch_size": 16}


def test_a_model_step_reads_its_manifest(base: Path) -> None:
    spec = _spec({}, models={"m": MODEL, "n": {**MODEL, "runtime": "native"}})
    steps = resolve_steps(spec, base)
    m = steps["m"]
    assert (m.kind, m.source, m.function, m.kwargs) == ("onnx", base / "export/model.onnx", "", {})
    assert [t.name for t in m.inputs] == ["z"] and [t.name for t in m.outputs] == ["score"]
    assert m.what == "model 'm'" and not m.native and steps["n"].native
    native = resolve_steps(spec, base, runtime="native")
    assert native["m"].native
    assert not resolve_steps(spec, base, runtime="python")["n"].native


@pytest.mark.parametrize(
    ("model", "manifest", "message"),
    [
        ({"format": "aoti"}, {"artifacts": {}}, r"^models.m.format: .*export has no aoti export$"),
        (
            {"format": "torchscript"},
            {
                "parity": {
                    "torchscript": {
                        "score": {
                            "max_abs_error": 1,
                            "max_rel_error": 1,
                            "batch_sizes": [1],
                            "passed": False,
                        }
                    }
                }
            },
            r"^models.m: torchscript export failed its parity check on \['score'\]$",
        ),
        (
            {"max_batch_size": 17},
            {},
            r"^models.m.max_batch_size: 17 is larger than the batch size its export was "
            r"checked at \(16\)$",
        ),
        (
            {"format": "aoti", "runtime": "native"},
            {},
            r"^models.m.runtime: native has no Triton platform for format 'aoti' \(it serves "
            r"\['onnx', 'torchscript'\]\); use runtime: python$",
        ),
    ],
)
def test_bad_models(base: Path, model: Any, manifest: Any, message: str) -> None:
    _manifest(base / "export", **manifest)
    spec = _spec({}, models={"m": {**MODEL, **model}})
    with pytest.raises(SpecError, match=message):
        resolve_steps(spec, base)


def test_model_at_its_exports_batch_size_and_a_missing_artifact(base: Path) -> None:
    spec = _spec({}, models={"m": MODEL})
    assert resolve_steps(spec, base)["m"].options.max_batch_size == 16
    (base / "export" / "model.onnx").unlink()
    with pytest.raises(SpecError, match=r"^models.m.export: .*model.onnx is missing$"):
        resolve_steps(spec, base)


def _with_model(runtime: str = "python", fuse: Any = "auto", **post: Any) -> Any:
    return _spec(
        {
            "e": {
                "steps": ["pre", "mid", "m", "post"],
                "outputs": ["out", "w", "score"],
                "fuse": fuse,
            }
        },
        models={"m": {**MODEL, "runtime": runtime}},
        **post,
    )


def test_auto_fuse_stops_at_native_models_and_instance_kinds(base: Path) -> None:
    plan = _compile(base, "e", _with_model("native"))
    assert plan.groups == [[0, 1], [3]] and not plan.fused()
    assert units(plan) == [("e_pre_mid", [0, 1]), ("m", [2]), ("post", [3])]
    plan = _compile(base, "e", _with_model("python"))
    assert plan.groups == [[0, 1, 2, 3]] and plan.fused()
    gpu = _stage("post", [_t("z")], [_t("out")], instance_groups=[{"kind": "gpu"}])
    plan = _compile(base, "e", _with_model("python", post=gpu))
    assert plan.groups == [[0, 1, 2], [3]]
    assert units(plan) == [("e_pre_m", [0, 1, 2]), ("post", [3])]


def test_fuse_none_and_explicit_groups(base: Path) -> None:
    plan = _compile(base, "e", _with_model(fuse="none"))
    assert plan.groups == [] and not plan.fused()
    assert [u for u, _ in units(plan)] == ["pre", "mid", "m", "post"]
    plan = _compile(base, "e", _with_model(fuse=[["mid", "m"]]))
    assert plan.groups == [[1, 2]]
    assert units(plan) == [("pre", [0]), ("e_mid_m", [1, 2]), ("post", [3])]
    plan = _compile(base, "e", _with_model(fuse=[["pre", "mid", "m", "post"]]))
    assert plan.fused() and units(plan) == [("e", [0, 1, 2, 3])]


@pytest.mark.parametrize(
    ("fuse", "runtime", "message"),
    [
        (
            [["pre", "nope"]],
            "python",
            r"^ensembles.e.fuse\[0\]: \['nope'\] are not steps of "
            "ensemble 'e'$",
        ),
        (
            [["pre"], ["mid", "post"]],
            "python",
            r"^ensembles.e.fuse\[1\]: \['mid', 'post'\] are "
            "not adjacent steps in order$",
        ),
        ([["mid", "pre"]], "python", "are not adjacent steps in order$"),
        ([["mid", "m"]], "native", r"^ensembles.e.fuse\[0\]: 'm' runs natively and cannot fuse$"),
    ],
)
def test_bad_fuse_groups(base: Path, fuse: Any, runtime: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _compile(base, "e", _with_model(runtime, fuse=fuse))


def test_fuse_group_across_instance_kinds(base: Path) -> None:
    gpu = _stage("post", [_t("z")], [_t("out")], instance_groups=[{"kind": "gpu"}])
    with pytest.raises(
        SpecError,
        match=r"^ensembles.e.fuse\[0\]: \['m', 'post'\] run on different instance kinds",
    ):
        _compile(base, "e", _with_model(fuse=[["m", "post"]], post=gpu))


def test_holders_and_served_models_read_the_spec_alone(base: Path) -> None:
    spec = _with_model("native")
    spec.ensembles["f"] = spec.ensembles["e"].model_copy(update={"fuse": "none"})
    spec.stages["extra"] = spec.stages["pre"]
    assert holders(spec) == {
        ("e", "pre"): "e_pre_mid",
        ("e", "mid"): "e_pre_mid",
        ("e", "m"): "m",
        ("e", "post"): "post",
        ("f", "pre"): "pre",
        ("f", "mid"): "mid",
        ("f", "m"): "m",
        ("f", "post"): "post",
    }
    assert served_models(spec) == ["pre", "mid", "post", "extra", "m", "e_pre_mid", "e", "f"]
    assert holders(spec, runtime="python")[("e", "m")] == "e"
    assert served_models(spec, runtime="python") == ["pre", "mid", "post", "extra", "m", "e", "f"]
    assert set(holders(spec, fuse="none").values()) == {"pre", "mid", "m", "post"}
    assert served_models(spec, fuse="none") == ["pre", "mid", "post", "extra", "m", "e", "f"]


def test_fused_serving_derived_from_its_steps(base: Path) -> None:
    plan = _compile(base, "e", _spec({"e": CHAIN}))
    # pre batches with no delay (the default), mid waits 300 us, post 100 us.
    derived = fused_serving(plan, [0, 1, 2])
    assert derived.max_batch_size == 8
    assert derived.dynamic_batching is not None
    assert derived.dynamic_batching.max_queue_delay_microseconds == 0
    assert [g.count for g in derived.instance_groups] == [3]
    tail = fused_serving(plan, [1, 2])
    assert tail.dynamic_batching is not None
    assert tail.dynamic_batching.max_queue_delay_microseconds == 100
    assert tail.max_batch_size == 8
    unbatched = _spec({"e": CHAIN}, pre=_stage("pre", [_t("x")], [_t("y")], dynamic_batching=None))
    assert fused_serving(_compile(base, "e", unbatched), [0, 1, 2]).dynamic_batching is None


def test_plan_json_and_group_io(base: Path) -> None:
    spec = _with_model("python", fuse="none")
    plan = _compile(base, "e", spec)
    files = {"pre": "stages.py", "mid": "stages.py", "m": "model.onnx", "post": "stages.py"}
    data = plan_json("e", plan.steps, plan.inputs, plan.outputs, 8, files)
    assert data["name"] == "e" and data["max_batch_size"] == 8
    assert data["inputs"] == [{"name": "x", "tensor": "x", "dtype": "FP32", "shape": [4]}]
    assert [o["name"] for o in data["outputs"]] == ["out", "w", "score"]
    pre, _, model, _ = data["steps"]
    assert pre == {
        "name": "pre",
        "kind": "stage",
        "file": "stages.py",
        "function": "pre",
        "kwargs": {"scale": 2.0},
        "inputs": [{"name": "x", "tensor": "x", "dtype": "FP32", "shape": [4]}],
        "outputs": [{"name": "y", "tensor": "y", "dtype": "FP32", "shape": [4]}],
    }
    assert model == {
        "name": "m",
        "kind": "onnx",
        "file": "model.onnx",
        "inputs": [{"name": "z", "tensor": "z", "dtype": "FP32", "shape": [4]}],
        "outputs": [{"name": "score", "tensor": "score", "dtype": "FP32", "shape": [1]}],
    }
    inputs, outputs = group_io(plan, [0, 1])
    assert [t.name for t in inputs] == ["x"]
    assert [t.name for t in outputs] == ["z", "w"]  # z read later, w returned; y stays inside
    inputs, outputs = group_io(plan, [2, 3])
    assert [t.name for t in inputs] == ["z"] and [t.name for t in outputs] == ["score", "out"]


def test_group_io_names_renamed_tensors(base: Path) -> None:
    spec = _spec(
        {
            "e": {
                "steps": [
                    {"model": "pre", "outputs": {"y": "scaled"}},
                    {"model": "mid", "inputs": {"y": "scaled"}},
                    "post",
                ],
                "outputs": ["out", "w"],
            }
        }
    )
    plan = _compile(base, "e", spec)
    inputs, outputs = group_io(plan, [1])
    assert [(t.name, t.dtype) for t in inputs] == [("scaled", "FP32")]
    assert [t.name for t in outputs] == ["z", "w"]
    _, outputs = group_io(plan, [0])
    assert [t.name for t in outputs] == ["scaled"]


def test_empty_plan_is_not_fused() -> None:
    assert not EnsemblePlan("e", [], [], [], 0).fused()


def _message(base: Path, ensemble: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        _compile(base, "e", _spec({"e": ensemble}))
    return str(info.value)


def test_wiring_errors_name_the_step_tensor_and_a_likely_fix(base: Path) -> None:
    # post reads 'z'; mid wrote it as 'zz' by mistake: the guess names the writer.
    renamed = {"model": "mid", "outputs": {"z": "zy"}}
    assert _message(base, {"steps": ["pre", renamed, "post"], "outputs": ["out", "w"]}) == (
        "ensembles.e.steps[2]: model 'post' input 'z' reads tensor 'z', which no earlier step "
        "writes and the ensemble's inputs default to the first step's inputs; did you mean 'zy' "
        "(written by step 1 'mid')? Map it with `inputs: {z: zy}` on the step, or add 'z' to the "
        "ensemble's `inputs:` if clients send it"
    )
    far = {"model": "mid", "outputs": {"z": "qqq"}}
    assert _message(base, {"steps": ["pre", far, "post"], "inputs": ["x"]}) == (
        "ensembles.e.steps[2]: model 'post' input 'z' reads tensor 'z', which no earlier step "
        "writes and the ensemble's inputs are ['x']. Map it with `inputs: {z: <tensor>}` on the "
        "step, or add 'z' to the ensemble's `inputs:` if clients send it"
    )
    writes_input = {"model": "mid", "outputs": {"w": "x"}}
    assert _message(base, {"steps": ["pre", writes_input, "post"]}) == (
        "ensembles.e.steps[1]: model 'mid' writes tensor 'x', which the ensemble input already "
        "writes; map one of them to another name with `outputs:` on the step"
    )
    twice = {"model": "mid", "outputs": {"w": "z"}}
    assert _message(base, {"steps": ["pre", twice, "post"]}) == (
        "ensembles.e.steps[1]: model 'mid' writes tensor 'z', which step 1 'mid' already "
        "writes; map one of them to another name with `outputs:` on the step"
    )
    assert _message(base, {**CHAIN, "inputs": ["x", "zz"]}) == (
        "ensembles.e.inputs: no step reads ['zz']; did you mean 'z'?"
    )
    assert _message(base, {**CHAIN, "inputs": ["x", "abc"]}) == (
        "ensembles.e.inputs: no step reads ['abc']"
    )


def test_default_outputs_of_a_longer_chain_are_its_last_steps(base: Path) -> None:
    spec = _spec(
        {
            "e": {
                "steps": [
                    "pre",
                    {"model": "post", "inputs": {"z": "y"}, "outputs": {"out": "o1"}},
                    {"model": "post", "inputs": {"z": "o1"}},
                ]
            }
        }
    )
    assert [t.name for t in _compile(base, "e", spec).outputs] == ["out"]


def test_a_stage_file_under_a_folder_with_a_colon(base: Path) -> None:
    (base / "a:b").mkdir()
    (base / "a:b" / "stages.py").write_text(STAGES)
    pre = {**STAGE_SPECS["pre"], "function": "a:b/stages.py:pre"}
    plan = _compile(base, "e", _spec({"e": CHAIN}, pre=pre))
    assert plan.steps[0].step.source == (base / "a:b" / "stages.py").resolve()
    assert plan.steps[0].step.function == "pre"


def test_plan_json_outputs_name_their_tensors(base: Path) -> None:
    plan = _compile(base, "e", _spec({"e": CHAIN}))
    files = dict.fromkeys(["pre", "mid", "post"], "stages.py")
    data = plan_json("e", plan.steps, plan.inputs, plan.outputs, 8, files)
    assert data["outputs"] == [
        {"name": "out", "tensor": "out", "dtype": "FP32", "shape": [4]},
        {"name": "w", "tensor": "w", "dtype": "FP32", "shape": [4]},
    ]


def test_holders_name_the_ensemble_of_a_bad_fuse_group(base: Path) -> None:
    with pytest.raises(
        SpecError, match=r"^ensembles.e.fuse\[0\]: \['nope'\] are not steps of ensemble 'e'$"
    ):
        holders(_with_model("python", fuse=[["pre", "nope"]]))
