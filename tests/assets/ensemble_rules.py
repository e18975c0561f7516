"""Hand-written ensembles, each breaking one rule of Triton's ensemble loader, over two tiny
Python-backend models. Used to check `validate` refuses exactly what Triton refuses."""

from __future__ import annotations

from pathlib import Path

# A Python-backend model that copies each input to the output of the same position.
COPY_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import json

        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            arrays = [pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs]
            tensors = [
                pb_utils.Tensor(name, arrays[min(i, len(arrays) - 1)])
                for i, name in enumerate(self.outputs)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
"""


def _tensor(kind: str, name: str, dims: str = "[4]", dtype: str = "TYPE_FP32") -> str:
    return f'{kind} {{ name: "{name}" data_type: {dtype} dims: {dims} }}\n'


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = "".join(f'input_map {{ key: "{k}" value: "{v}" }} ' for k, v in inputs.items())
    maps += "".join(f'output_map {{ key: "{k}" value: "{v}" }} ' for k, v in outputs.items())
    return f'  step {{ model_name: "{model}" model_version: -1 {maps}}}\n'


def _ensemble(
    name: str, inputs: list[str], outputs: list[str], steps: list[str], extra: str = ""
) -> str:
    text = f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 4\n'
    text += "".join(_tensor("input", t) for t in inputs)
    text += "".join(_tensor("output", t) for t in outputs)
    return text + extra + "ensemble_scheduling {\n" + "".join(steps) + "}\n"


ONE = {"i": "x"}
# name -> (config.pbtxt text, words of Triton's refusal ("" where Triton loads it), words of
# validate's refusal)
BROKEN: dict[str, tuple[str, str, str]] = {
    "unused_output": (
        _ensemble("unused_output", ["x"], ["a"], [_step("two", {"i": "x"}, {"o": "a", "p": "b"})]),
        "ensemble tensor 'b' is unused",
        "tensor 'b' (model 'two' output 'p') is read by no step and is not an ensemble output",
    ),
    "misspelled": (
        _ensemble(
            "misspelled",
            ["x", "num"],
            ["out"],
            [_step("one", {"i": "x"}, {"o": "numz"}), _step("one", {"i": "num"}, {"o": "out"})],
        ),
        "ensemble tensor 'numz' is unused",
        "tensor 'numz' (model 'one' output 'o') is read by no step",
    ),
    "input_unread": (
        _ensemble("input_unread", ["x", "y"], ["out"], [_step("one", ONE, {"o": "out"})]),
        "ensemble input 'y' for ensemble input_unread' is not used",
        "input 'y': no step reads this ensemble input",
    ),
    "written_twice": (
        _ensemble(
            "written_twice",
            ["x"],
            ["out"],
            [_step("one", ONE, {"o": "out"}), _step("one", ONE, {"o": "out"})],
        ),
        "ensemble tensor 'out' can appear in an output map only once",
        "tensor 'out' is already produced by model 'one' output 'o'",
    ),
    "output_unwritten": (
        _ensemble("output_unwritten", ["x"], ["out", "q"], [_step("one", ONE, {"o": "out"})]),
        "ensemble output 'q' for ensemble output_unwritten' is not used",
        "tensor 'q' for ensemble 'output_unwritten' output 'q' is produced by nothing",
    ),
    "never_produced": (
        _ensemble(
            "never_produced",
            ["x"],
            ["out"],
            [_step("one", ONE, {"o": "a"}), _step("two", {"i": "t"}, {"o": "out", "p": "a2"})],
        ),
        "depending tensors, 't', is not connected",
        "tensor 't' for model 'two' input 'i' is produced by nothing",
    ),
    "unknown_model": (
        _ensemble("unknown_model", ["x"], ["out"], [_step("gone", ONE, {"o": "out"})]),
        "gone",
        "model 'gone' is not in the repository",
    ),
    "unknown_model_input": (
        _ensemble("unknown_model_input", ["x"], ["out"], [_step("one", {"j": "x"}, {"o": "out"})]),
        "is mapping to non-existing input j in model one",
        "model 'one' has no input 'j'",
    ),
    "empty_output_map": (
        _ensemble("empty_output_map", ["x"], ["x2"], [_step("one", ONE, {})]),
        "must specify 'output_map' in step 0",
        "step[0].output_map: empty",
    ),
    "with_instance_group": (
        _ensemble(
            "with_instance_group",
            ["x"],
            ["out"],
            [_step("one", ONE, {"o": "out"})],
            extra="instance_group { count: 1 kind: KIND_CPU }\n",
        ),
        "instance group should not be specified for ensemble",
        "instance_group: an ensemble may not set it",
    ),
    "dtype_mismatch": (
        _ensemble("dtype_mismatch", ["x"], ["out"], [_step("half", ONE, {"o": "out"})]),
        "inconsistent data type",
        "wants FP16[4]",
    ),
    "batch_too_large": (
        _ensemble("batch_too_large", ["x"], ["out"], [_step("small", ONE, {"o": "out"})]),
        "which only allows maximum batch size to be 2",
        "ensemble max_batch_size 4 is larger than model 'small' max_batch_size 2",
    ),
    "writes_input": (
        _ensemble(
            "writes_input",
            ["x"],
            ["out", "b"],
            [_step("one", ONE, {"o": "out"}), _step("two", ONE, {"o": "x", "p": "b"})],
        ),
        "",  # Triton 2.51 loads it; tritonpipe refuses: which 'x' a step reads is unclear
        "tensor 'x' is already produced by ensemble 'writes_input' input 'x'",
    ),
    "mixed_decoupled": (
        _ensemble(
            "mixed_decoupled",
            ["x"],
            ["out"],
            [
                _step("dec", ONE, {"o": "a"}),
                _step("dec", ONE, {"o": "b"}),
                _step("pair", {"i": "a", "j": "b"}, {"o": "out"}),
            ],
        ),
        "receives inputs originated from different decoupled models",
        "model 'pair' reads tensors that come from different decoupled models",
    ),
}

# Ensembles both must accept: a chain, and a batching ensemble over a non-batching model.
GOOD: dict[str, str] = {
    "chain": _ensemble(
        "chain",
        ["x"],
        ["out", "b"],
        [_step("two", {"i": "x"}, {"o": "a", "p": "b"}), _step("one", {"i": "a"}, {"o": "out"})],
    ),
    "mixed_batching": _ensemble(
        "mixed_batching", ["x"], ["out"], [_step("flat", ONE, {"o": "out"})]
    ),
}

MODELS = {
    "one": (4, _tensor("input", "i") + _tensor("output", "o")),
    "two": (4, _tensor("input", "i") + _tensor("output", "o") + _tensor("output", "p")),
    "half": (4, _tensor("input", "i", dtype="TYPE_FP16") + _tensor("output", "o")),
    "small": (2, _tensor("input", "i") + _tensor("output", "o")),
    "pair": (4, _tensor("input", "i") + _tensor("input", "j") + _tensor("output", "o")),
    "dec": (
        4,
        _tensor("input", "i")
        + _tensor("output", "o")
        + "model_transaction_policy { decoupled: true }\n",
    ),
    "flat": (0, _tensor("input", "i", "[-1, 4]") + _tensor("output", "o", "[-1, 4]")),
}


def write_repository(root: Path) -> None:
    """The composing models, every broken ensemble and the good ones, under ``root``."""
    for name, (batch, tensors) in MODELS.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(COPY_MODEL)
        (root / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "python"\nmax_batch_size: {batch}\n{tensors}'
            "instance_group { count: 1 kind: KIND_CPU }\n"
        )
    ensembles = {name: text for name, (text, _, _) in BROKEN.items()} | GOOD
    for name, text in ensembles.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(text)
