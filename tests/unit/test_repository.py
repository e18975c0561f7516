"""config.pbtxt generation and repository validation (tritonpipe/repository/) on small
hand-written repositories: every problem is checked as the exact line a user reads. Which of
these Triton itself refuses is held against the real server in
tests/integration/test_ensemble_rules.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tests.assets.ensemble_rules import MODELS, _ensemble, _step, _tensor
from tritonpipe.errors import RepositoryError
from tritonpipe.repository import (
    Batching,
    Instances,
    Serving,
    Step,
    ensemble_config,
    model_config,
    parse_pbtxt,
    to_pbtxt,
    validate_repository,
)
from tritonpipe.tensors import TensorSpec

X = TensorSpec(name="x", dtype="FP32", shape=(4,))
Y = TensorSpec(name="y", dtype="BYTES", shape=(-1, 2))


def test_model_config_writes_every_serving_option() -> None:
    serving = Serving(
        max_batch_size=8,
        batching=Batching(max_queue_delay_microseconds=250, preferred_batch_size=(4, 8)),
        instances=(Instances(count=2), Instances(count=1, kind="gpu", gpus=(0, 1))),
    )
    config = model_config(
        "m",
        inputs=[X],
        outputs=[Y],
        serving=serving,
        backend="python",
        parameters={"b": "2", "a": "1"},
    )
    text = to_pbtxt(config)
    assert parse_pbtxt(text) == config
    assert text.index('key: "a"') < text.index('key: "b"')
    assert (config.name, config.backend, config.platform, config.max_batch_size) == (
        "m",
        "python",
        "",
        8,
    )
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("x", pb.TYPE_FP32, [4])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("y", pb.TYPE_STRING, [-1, 2])
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, g.kind, list(g.gpus)) for g in config.instance_group] == [
        (2, pb.ModelInstanceGroup.KIND_CPU, []),
        (1, pb.ModelInstanceGroup.KIND_GPU, [0, 1]),
    ]
    assert {k: v.string_value for k, v in config.parameters.items()} == {"a": "1", "b": "2"}
    assert "dims: [-1, 2]" in text  # short repeated form, as Triton's examples write it


def test_model_config_defaults() -> None:
    config = model_config(
        "m", inputs=[X], outputs=[X], serving=Serving(), platform="onnxruntime_onnx"
    )
    assert not config.HasField("dynamic_batching") and config.max_batch_size == 0
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (1, pb.ModelInstanceGroup.KIND_CPU)
    ]
    assert config.platform == "onnxruntime_onnx" and not config.parameters


def test_ensemble_config_chains_steps_in_order() -> None:
    steps = [
        Step(model="a", input_map={"i": "x"}, output_map={"o": "mid"}),
        Step(model="b", input_map={"i": "mid"}, output_map={"o": "y"}),
    ]
    config = ensemble_config("e", inputs=[X], outputs=[Y], max_batch_size=4, steps=steps)
    assert (config.platform, config.max_batch_size) == ("ensemble", 4)
    got = [
        (s.model_name, s.model_version, dict(s.input_map), dict(s.output_map))
        for s in config.ensemble_scheduling.step
    ]
    assert got == [("a", -1, {"i": "x"}, {"o": "mid"}), ("b", -1, {"i": "mid"}, {"o": "y"})]
    assert [t.name for t in config.input] == ["x"] and [t.name for t in config.output] == ["y"]


def _model(root: Path, name: str, text: str, files: dict[str, str] | None = None) -> Path:
    folder = root / name
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(text)
    for file, content in (files or {"model.py": ""}).items():
        (folder / "1" / file).write_text(content)
    return folder


def _python(name: str, batch: int = 4, extra: str = "") -> str:
    return f'name: "{name}"\nbackend: "python"\nmax_batch_size: {batch}\n{extra}'


def _problems(root: Path) -> list[str]:
    with pytest.raises(RepositoryError) as info:
        validate_repository(root)
    return [p.replace(f"{root}/", "") for p in info.value.problems]


def test_valid_repository_and_hidden_folders(tmp_path: Path) -> None:
    _model(tmp_path, "one", _python("one", extra=MODELS["one"][1]))
    _model(tmp_path, "plain", 'backend: "onnxruntime"\n' + MODELS["one"][1], {"model.onnx": ""})
    (tmp_path / ".git").mkdir()
    (tmp_path / "README.md").write_text("not a model")
    models = validate_repository(tmp_path)
    assert sorted(models) == ["one", "plain"]
    assert models["one"].config_path == tmp_path / "one" / "config.pbtxt"
    assert not models["one"].is_ensemble
    for name, model in models.items():  # the configs as written, nothing added by the checks
        assert model.config == parse_pbtxt((tmp_path / name / "config.pbtxt").read_text())


def test_root_problems(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match=f"^{tmp_path / 'nope'}: not a folder$"):
        validate_repository(tmp_path / "nope")
    assert _problems(tmp_path) == [f"{tmp_path}: holds no model folders"]


def test_config_that_does_not_parse_names_file_line_and_column(tmp_path: Path) -> None:
    _model(tmp_path, "bad", 'name: "bad"\nbackend: "python"\nmax_batch_sise: 4\n')
    (tmp_path / "empty").mkdir()
    assert _problems(tmp_path) == [
        'bad/config.pbtxt:3:1: Message type "inference.ModelConfig" has no field named '
        '"max_batch_sise".',
        "empty/config.pbtxt: missing (every model folder needs a config.pbtxt)",
    ]


def test_model_level_problems(tmp_path: Path) -> None:
    _model(tmp_path, "named", _python("other", extra=MODELS["one"][1]))
    _model(tmp_path, "nobackend", "max_batch_size: 1\n" + MODELS["one"][1])
    _model(tmp_path, "nosteps", 'platform: "ensemble"\n' + MODELS["one"][1])
    _model(tmp_path, "noversion", _python("noversion", extra=MODELS["one"][1]))
    (tmp_path / "noversion" / "1").rename(tmp_path / "noversion" / "latest")
    _model(tmp_path, "nofile", 'platform: "onnxruntime_onnx"\n' + MODELS["one"][1], {"x": ""})
    _model(tmp_path, "ownfile", 'backend: "python"\ndefault_model_filename: "m.py"\n', {})
    _model(tmp_path, "unknown", 'backend: "custom"\n', {})
    assert _problems(tmp_path) == [
        "named/config.pbtxt: name: 'other' does not match its folder 'named'",
        "nobackend/config.pbtxt: neither backend nor platform is set",
        "nofile/1/model.onnx: missing model file for model 'nofile'",
        "nosteps/config.pbtxt: ensemble_scheduling: an ensemble needs at least one step",
        "noversion: no version folder (such as noversion/1/)",
        "ownfile/1/m.py: missing model file for model 'ownfile'",
        "nosteps/config.pbtxt: input 'i': no step reads this ensemble input (Triton: ensemble "
        "input 'i' is not used)",
        "nosteps/config.pbtxt: output: tensor 'o' for ensemble 'nosteps' output 'o' is produced "
        "by nothing (neither an ensemble input nor an earlier step's output)",
    ]


def test_tensor_problems(tmp_path: Path) -> None:
    tensors = (
        _tensor("input", "")
        + _tensor("input", "a", "[0]")
        + _tensor("input", "a", "[-2, 3]")
        + 'input { name: "t" dims: [1] }\n'
        + _tensor("output", "a", "[-1]")
        + _tensor("output", "b", "[1, -1]")
    )
    _model(tmp_path, "m", _python("m", extra=tensors))
    assert _problems(tmp_path) == [
        "m/config.pbtxt: input[0].name: empty",
        "m/config.pbtxt: input[1].dims: [0] (each dim is >0 or -1)",
        "m/config.pbtxt: input[2].name: 'a' appears twice",
        "m/config.pbtxt: input[2].dims: [-2, 3] (each dim is >0 or -1)",
        "m/config.pbtxt: input[3].data_type: missing for 't'",
    ]


def test_batching_problems(tmp_path: Path) -> None:
    one = MODELS["one"][1]
    _model(tmp_path, "neg", _python("neg", -1, one))
    _model(tmp_path, "flat", _python("flat", 0, one + "dynamic_batching { }\n"))
    preferred = "dynamic_batching { preferred_batch_size: [0, 1, 4, 5] }\n"
    _model(tmp_path, "pref", _python("pref", 4, one + preferred))
    _model(tmp_path, "fine", _python("fine", 4, one + "dynamic_batching { }\n"))
    assert _problems(tmp_path) == [
        "flat/config.pbtxt: dynamic_batching: needs max_batch_size > 0",
        "neg/config.pbtxt: max_batch_size: -1 is negative",
        "pref/config.pbtxt: dynamic_batching.preferred_batch_size: 0 is outside "
        "1..max_batch_size (4)",
        "pref/config.pbtxt: dynamic_batching.preferred_batch_size: 5 is outside "
        "1..max_batch_size (4)",
    ]


PLAN = {
    "inputs": [{"name": "i"}],
    "outputs": [{"name": "o"}],
    "steps": [{"name": "pre", "file": "stages.py"}],
}


def _planned(root: Path, name: str, plan: object, files: dict[str, str]) -> None:
    extra = (
        MODELS["one"][1]
        + 'parameters { key: "tritonpipe.plan" value { string_value: "plan.json" } }\n'
    )
    text = json.dumps(plan) if not isinstance(plan, str) else plan
    _model(root, name, _python(name, extra=extra), {"model.py": "", "plan.json": text, **files})


def test_plan_problems(tmp_path: Path) -> None:
    runtime = {"tritonpipe_runtime.py": ""}
    _planned(tmp_path, "good", PLAN, {**runtime, "stages.py": ""})
    _planned(tmp_path, "noruntime", PLAN, {"stages.py": ""})
    _planned(tmp_path, "nostep", PLAN, runtime)
    _planned(tmp_path, "notjson", "{", runtime)
    _planned(tmp_path, "nokey", {"steps": []}, runtime)
    _planned(
        tmp_path,
        "differs",
        {**PLAN, "outputs": [{"name": "o"}, {"name": "p"}]},
        {**runtime, "stages.py": ""},
    )
    _model(
        tmp_path,
        "noplan",
        _python(
            "noplan",
            extra=MODELS["one"][1]
            + 'parameters { key: "tritonpipe.plan" value { string_value: "plan.json" } }\n',
        ),
    )
    problems = _problems(tmp_path)
    assert problems == [
        "differs/1/plan.json: plan outputs ['o', 'p'] differ from the config's ['o']",
        "nokey/1/plan.json: not a tritonpipe plan (KeyError: 'inputs')",
        "noplan/1/tritonpipe_runtime.py: missing for model 'noplan'",
        "noplan/1/plan.json: missing plan for model 'noplan'",
        "noruntime/1/tritonpipe_runtime.py: missing for model 'noruntime'",
        "nostep/1/stages.py: missing file of step 'pre'",
        "notjson/1/plan.json: not a tritonpipe plan (JSONDecodeError: Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1))",
    ]


def _composing(root: Path, *names: str) -> None:
    for name in names:
        batch, tensors = MODELS[name]
        _model(root, name, _python(name, batch, tensors))


def _ens(root: Path, name: str, text: str) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(text)


ONE = {"i": "x"}


def test_ensemble_edge_problems(tmp_path: Path) -> None:
    _composing(tmp_path, "one", "two", "half", "small", "flat")
    _ens(
        tmp_path,
        "a_dtype",
        _ensemble("a_dtype", ["x"], ["out"], [_step("half", ONE, {"o": "out"})]),
    )
    _ens(
        tmp_path,
        "b_batch",
        _ensemble("b_batch", ["x"], ["out"], [_step("small", ONE, {"o": "out"})]),
    )
    # A batching ensemble over a non-batching [-1, 4] model is fine (full shapes agree).
    _ens(
        tmp_path, "c_flat", _ensemble("c_flat", ["x"], ["out"], [_step("flat", ONE, {"o": "out"})])
    )
    _ens(
        tmp_path,
        "d_shape",
        _ensemble("d_shape", ["x"], ["out"], [_step("one", ONE, {"o": "out"})]).replace(
            'output { name: "out" data_type: TYPE_FP32 dims: [4] }',
            'output { name: "out" data_type: TYPE_FP32 dims: [5] }',
        ),
    )
    _ens(
        tmp_path,
        "e_unfed",
        _ensemble("e_unfed", ["x"], ["out"], [_step("two", {}, {"o": "out", "p": "x2"})]).replace(
            "input_map", "x"
        ),
    )
    problems = _problems(tmp_path)
    assert problems == [
        "a_dtype/config.pbtxt: ensemble_scheduling.step[0].input_map: ensemble 'a_dtype' input "
        "'x' is FP32[4] but model 'half' input 'i' wants FP16[4] (tensor 'x')",
        "b_batch/config.pbtxt: ensemble_scheduling.step[0]: ensemble max_batch_size 4 is larger "
        "than model 'small' max_batch_size 2",
        "d_shape/config.pbtxt: output: model 'one' output 'o' is FP32[4] but ensemble 'd_shape' "
        "output 'out' wants FP32[5] (tensor 'out')",
        "e_unfed/config.pbtxt: ensemble_scheduling.step[0].input_map: empty (every step reads at "
        "least one tensor)",
        "e_unfed/config.pbtxt: input 'x': no step reads this ensemble input (Triton: ensemble "
        "input 'x' is not used)",
        "e_unfed/config.pbtxt: ensemble_scheduling.step[0].output_map: tensor 'x2' (model 'two' "
        "output 'p') is read by no step and is not an ensemble output; add it to the ensemble's "
        "outputs or drop the mapping (Triton: ensemble tensor 'x2' is unused in ensemble "
        "'e_unfed')",
        "e_unfed/config.pbtxt: ensemble_scheduling.step[0].input_map: model 'two' input 'i' is "
        "not fed",
    ]


def test_cycle_unfed_optional_input_and_fields(tmp_path: Path) -> None:
    _composing(tmp_path, "one", "pair")
    _ens(
        tmp_path,
        "loop",
        _ensemble(
            "loop",
            ["x"],
            ["out"],
            [
                _step("pair", {"i": "x", "j": "b"}, {"o": "a"}),
                _step("one", {"i": "a"}, {"o": "b"}),
                _step("one", {"i": "a"}, {"o": "out"}),
            ],
        ),
    )
    _ens(
        tmp_path,
        "fields",
        _ensemble(
            "fields",
            ["x"],
            ["out"],
            [
                '  step { model_name: "" input_map { key: "i" value: "x" } output_map { key: "o" value: "out" } }\n'
            ],
            extra='optimization { priority: PRIORITY_MAX }\nmodel_warmup { name: "w" }\n',
        ),
    )
    problems = _problems(tmp_path)
    assert problems == [
        "fields/config.pbtxt: model_warmup: an ensemble may not set it (Triton refuses it)",
        "fields/config.pbtxt: optimization: an ensemble may not set it (Triton refuses it)",
        "fields/config.pbtxt: ensemble_scheduling.step[0].model_name: empty",
        "fields/config.pbtxt: ensemble_scheduling.step[0].model_name: model '' is not in the "
        "repository",
        "fields/config.pbtxt: output: tensor 'out' for ensemble 'fields' output 'out' is "
        "produced by nothing (neither an ensemble input nor an earlier step's output)",
        "loop/config.pbtxt: ensemble_scheduling: ensemble 'loop' steps form a cycle",
    ]


def test_optional_input_may_go_unfed_and_decoupled_pairs(tmp_path: Path) -> None:
    _composing(tmp_path, "one", "dec")
    pair = MODELS["pair"][1].replace('name: "j" data_type', 'name: "j" optional: true data_type')
    _model(tmp_path, "pair", _python("pair", 4, pair))
    _ens(
        tmp_path,
        "half_fed",
        _ensemble("half_fed", ["x"], ["out"], [_step("pair", ONE, {"o": "out"})]),
    )
    # One decoupled source feeding both inputs is fine; two different ones are refused.
    _ens(
        tmp_path,
        "same_source",
        _ensemble(
            "same_source",
            ["x"],
            ["out"],
            [
                _step("dec", ONE, {"o": "a"}),
                _step("one", {"i": "a"}, {"o": "b"}),
                _step("pair", {"i": "a", "j": "b"}, {"o": "out"}),
            ],
        ),
    )
    _ens(
        tmp_path,
        "two_sources",
        _ensemble(
            "two_sources",
            ["x"],
            ["out"],
            [
                _step("pair", {"i": "a", "j": "b"}, {"o": "out"}),
                _step("dec", ONE, {"o": "a"}),
                _step("dec", ONE, {"o": "b"}),
            ],
        ),
    )
    problems = _problems(tmp_path)
    assert problems == [
        "two_sources/config.pbtxt: ensemble_scheduling.step[0]: model 'pair' reads tensors "
        "that come from different decoupled models (Triton refuses this)",
    ]


def test_ensemble_mixing_ensemble_input_and_decoupled_output(tmp_path: Path) -> None:
    _composing(tmp_path, "dec", "pair")
    _ens(
        tmp_path,
        "mixed",
        _ensemble(
            "mixed",
            ["x"],
            ["out"],
            [_step("dec", ONE, {"o": "a"}), _step("pair", {"i": "x", "j": "a"}, {"o": "out"})],
        ),
    )
    assert _problems(tmp_path) == [
        "mixed/config.pbtxt: ensemble_scheduling.step[1]: model 'pair' reads tensors that come "
        "from different decoupled models (Triton refuses this)"
    ]


def test_parse_pbtxt_raises_on_bad_text() -> None:
    with pytest.raises(text_format.ParseError):
        parse_pbtxt("nope: 1")


SINGLE = _tensor("input", "i") + _tensor("output", "o")


def test_batch_dims_meet_at_max_batch_size_one_and_zero(tmp_path: Path) -> None:
    # A batching model's [4] is a non-batching one's [-1, 4], at max_batch_size 1 too; an
    # ensemble of max_batch_size 0 holds full shapes.
    _composing(tmp_path, "flat", "one")
    _model(tmp_path, "single", _python("single", 1, SINGLE))
    steps = [
        _step("flat", ONE, {"o": "a"}),
        _step("single", {"i": "a"}, {"o": "b"}),
        _step("flat", {"i": "b"}, {"o": "out"}),
    ]
    at_one = _ensemble("at_one", ["x"], ["out"], steps)
    _ens(tmp_path, "at_one", at_one.replace("max_batch_size: 4", "max_batch_size: 1"))
    at_zero = _ensemble("at_zero", ["x"], ["out"], [_step("one", ONE, {"o": "out"})])
    at_zero = at_zero.replace("max_batch_size: 4", "max_batch_size: 0")
    _ens(tmp_path, "at_zero", at_zero.replace("dims: [4]", "dims: [-1, 4]"))
    assert sorted(validate_repository(tmp_path)) == ["at_one", "at_zero", "flat", "one", "single"]


def test_ensemble_problems_after_a_bad_step_or_mapping(tmp_path: Path) -> None:
    _composing(tmp_path, "one", "two", "pair")
    _model(tmp_path, "single", _python("single", 1, SINGLE))
    _ens(tmp_path, "big", _ensemble("big", ["x"], ["out"], [_step("single", ONE, {"o": "out"})]))
    missing_first = [_step("gone", ONE, {"o": "m0"}), _step("pair", ONE, {"o": "out"})]
    _ens(tmp_path, "gone_first", _ensemble("gone_first", ["x"], ["out", "m0"], missing_first))
    # Two bad mappings in one step: both are reported (the walk goes on past the first).
    maps = [
        _step("one", {"a": "x", "b": "x", "i": "x"}, {"c": "q", "d": "q", "o": "a"}),
        _step("two", {"i": "a"}, {"o": "x", "p": "x"}),
        _step("one", {"i": "a"}, {"o": "out"}),
    ]
    _ens(tmp_path, "maps", _ensemble("maps", ["x"], ["out"], maps))
    step = "config.pbtxt: ensemble_scheduling.step"
    problems = _problems(tmp_path)
    assert problems[:4] == [
        f"big/{step}[0]: ensemble max_batch_size 4 is larger than model 'single' max_batch_size 1",
        f"gone_first/{step}[0].model_name: model 'gone' is not in the repository",
        f"gone_first/{step}[1].input_map: model 'pair' input 'j' is not fed",
        "gone_first/config.pbtxt: output: tensor 'm0' for ensemble 'gone_first' output 'm0' "
        "is produced by nothing (neither an ensemble input nor an earlier step's output)",
    ]
    assert sorted(p for p in problems if p.startswith("maps/") and "read by no step" not in p) == [
        f"maps/{step}[0].input_map: model 'one' has no input 'a'",
        f"maps/{step}[0].input_map: model 'one' has no input 'b'",
        f"maps/{step}[0].output_map: model 'one' has no output 'c'",
        f"maps/{step}[0].output_map: model 'one' has no output 'd'",
        f"maps/{step}[1].output_map: tensor 'x' is already produced by ensemble 'maps' input 'x'",
        f"maps/{step}[1].output_map: tensor 'x' is already produced by ensemble 'maps' input 'x'",
    ]
    assert len(problems) == 4 + 6 + 1  # and tensor q: read by no step


def test_an_edge_describes_bytes_tensors_as_bytes() -> None:
    from tritonpipe.repository.wiring import _End

    assert _End("w", pb.TYPE_STRING, (-1, 2)).describe() == "BYTES[-1,2]"
    assert _End("w", pb.TYPE_FP32, (3,)).describe() == "FP32[3]"


def test_config_names_and_default_backend() -> None:
    steps = [Step(model="a", input_map={"i": "x"}, output_map={"o": "y"})]
    assert ensemble_config("e", inputs=[X], outputs=[Y], max_batch_size=4, steps=steps).name == "e"
    onnx = model_config(
        "m", inputs=[X], outputs=[X], serving=Serving(), platform="onnxruntime_onnx"
    )
    assert (onnx.backend, onnx.platform) == ("", "onnxruntime_onnx")


def test_parse_error_quoting_a_colon_keeps_the_whole_message(tmp_path: Path) -> None:
    _model(tmp_path, "bad", 'name: "bad"\nbackend: "python"\nmax_batch_size: "x : y"\n')
    assert _problems(tmp_path) == [
        'bad/config.pbtxt:3:17: \'max_batch_size: "x : y"\': Couldn\'t parse integer: "x : y"',
    ]


def test_decoupled_sources_of_a_missing_model_and_of_a_step_reading_nothing(
    tmp_path: Path,
) -> None:
    _composing(tmp_path, "one", "dec", "pair")
    # A missing model is not decoupled: its output pairs with the ensemble input.
    ghost = [_step("gone", ONE, {"o": "g"}), _step("pair", {"i": "x", "j": "g"}, {"o": "out"})]
    _ens(tmp_path, "ghost", _ensemble("ghost", ["x"], ["out"], ghost))
    # A step reading nothing writes what an ensemble input is: not the decoupled model's.
    empty = [
        _step("one", {}, {"o": "e"}),
        _step("dec", ONE, {"o": "d"}),
        _step("pair", {"i": "e", "j": "d"}, {"o": "out"}),
    ]
    _ens(tmp_path, "empty", _ensemble("empty", ["x"], ["out"], empty))
    step = "config.pbtxt: ensemble_scheduling.step"
    assert [p for p in _problems(tmp_path) if "decoupled" in p or "gone" in p] == [
        f"empty/{step}[2]: model 'pair' reads tensors that come from different decoupled models "
        "(Triton refuses this)",
        f"ghost/{step}[0].model_name: model 'gone' is not in the repository",
    ]
