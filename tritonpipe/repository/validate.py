"""Check a Triton model repository: configs parse as Triton's ModelConfig, files are in place,
batch sizes make sense, and ensembles are wired (see :mod:`tritonpipe.repository.wiring`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonpipe.errors import RepositoryError

CONFIG = "config.pbtxt"

# Default model file per backend or platform (Triton's own defaults).
MODEL_FILES = {
    "python": "model.py",
    "onnxruntime": "model.onnx",
    "onnxruntime_onnx": "model.onnx",
    "pytorch": "model.pt",
    "pytorch_libtorch": "model.pt",
    "tensorrt": "model.plan",
    "tensorrt_plan": "model.plan",
    "tensorflow_savedmodel": "model.savedmodel",
    "tensorflow_graphdef": "model.graphdef",
    "openvino": "model.xml",
}

PLAN_PARAMETER = "tritonpipe.plan"
RUNTIME_MODULE = "tritonpipe_runtime.py"


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A model folder whose config.pbtxt parsed."""

    name: str
    folder: Path
    config: pb.ModelConfig

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG

    @property
    def is_ensemble(self) -> bool:
        return bool(self.config.platform == "ensemble")


def load_model(folder: Path, problems: list[str]) -> LoadedModel | None:
    """Parse ``folder/config.pbtxt``; record a problem and return None when it does not parse."""
    path = folder / CONFIG
    if not path.is_file():
        problems.append(f"{path}: missing (every model folder needs a config.pbtxt)")
        return None
    try:
        config = text_format.Parse(path.read_text(), pb.ModelConfig())
    except text_format.ParseError as exc:
        # ParseError reads "LINE:COL : message"; make it "file:LINE:COL: message".
        where, _, message = str(exc).partition(" : ")
        problems.append(f"{path}:{where}: {message}" if message else f"{path}: {exc}")
        return None
    return LoadedModel(name=folder.name, folder=folder, config=config)


def _check_files(model: LoadedModel, problems: list[str]) -> None:
    versions = [p for p in model.folder.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        problems.append(f"{model.folder}: no version folder (such as {model.folder}/1/)")
        return
    if model.is_ensemble:
        return
    config = model.config
    filename = config.default_model_filename or MODEL_FILES.get(config.platform or config.backend)
    needed = [filename] if filename else []  # none for a backend whose layout we do not know
    plan = (
        config.parameters[PLAN_PARAMETER].string_value
        if PLAN_PARAMETER in config.parameters
        else ""
    )
    for version in versions:
        for name in needed:
            if not (version / name).exists():
                problems.append(f"{version / name}: missing model file for model '{model.name}'")
        if plan:
            _check_plan(model, version / plan, problems)


def _check_plan(model: LoadedModel, path: Path, problems: list[str]) -> None:
    """tritonpipe's runtime, its plan, and every file a step of the plan loads."""
    if not (path.parent / RUNTIME_MODULE).exists():
        problems.append(f"{path.parent / RUNTIME_MODULE}: missing for model '{model.name}'")
    try:
        plan = json.loads(path.read_text())
        steps = [(s["name"], s["file"]) for s in plan["steps"]]
        declared = {k: [t["name"] for t in plan[k]] for k in ("inputs", "outputs")}
    except OSError:
        problems.append(f"{path}: missing plan for model '{model.name}'")
        return
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(f"{path}: not a tritonpipe plan ({type(exc).__name__}: {exc})")
        return
    for step, file in steps:
        if not (path.parent / file).exists():
            problems.append(f"{path.parent / file}: missing file of step '{step}'")
    for key, field in (("inputs", "input"), ("outputs", "output")):
        config_names = [t.name for t in getattr(model.config, field)]
        if sorted(declared[key]) != sorted(config_names):
            problems.append(
                f"{path}: plan {key} {declared[key]} differ from the config's {config_names}"
            )


def _check_tensors(model: LoadedModel, problems: list[str]) -> None:
    for field in ("input", "output"):
        seen: set[str] = set()
        for i, tensor in enumerate(getattr(model.config, field)):
            where = f"{model.config_path}: {field}[{i}]"
            if not tensor.name:
                problems.append(f"{where}.name: empty")
            elif tensor.name in seen:
                problems.append(f"{where}.name: '{tensor.name}' appears twice")
            seen.add(tensor.name)
            if tensor.data_type == pb.TYPE_INVALID:
                problems.append(f"{where}.data_type: missing for '{tensor.name}'")
            if any(d == 0 or d < -1 for d in tensor.dims):
                problems.append(f"{where}.dims: {list(tensor.dims)} (each dim is >0 or -1)")


def _check_batching(model: LoadedModel, problems: list[str]) -> None:
    config, path = model.config, model.config_path
    if config.max_batch_size < 0:
        problems.append(f"{path}: max_batch_size: {config.max_batch_size} is negative")
    if not config.HasField("dynamic_batching"):
        return
    if config.max_batch_size == 0:
        problems.append(f"{path}: dynamic_batching: needs max_batch_size > 0")
    for size in config.dynamic_batching.preferred_batch_size:
        if size < 1 or size > config.max_batch_size:
            problems.append(
                f"{path}: dynamic_batching.preferred_batch_size: {size} is outside "
                f"1..max_batch_size ({config.max_batch_size})"
            )


def _check_model(model: LoadedModel, problems: list[str]) -> None:
    config, path = model.config, model.config_path
    if config.name and config.name != model.name:
        problems.append(f"{path}: name: '{config.name}' does not match its folder '{model.name}'")
    if not (config.platform or config.backend):
        problems.append(f"{path}: neither backend nor platform is set")
    if model.is_ensemble and not config.ensemble_scheduling.step:
        problems.append(f"{path}: ensemble_scheduling: an ensemble needs at least one step")
    _check_files(model, problems)
    _check_tensors(model, problems)
    _check_batching(model, problems)


def validate_repository(root: Path) -> dict[str, LoadedModel]:
    """Validate every model under ``root``; raise :class:`RepositoryError` listing all problems."""
    from tritonpipe.repository.wiring import check_ensemble

    if not root.is_dir():
        raise RepositoryError([f"{root}: not a folder"])
    problems: list[str] = []
    models: dict[str, LoadedModel] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        model = load_model(folder, problems)
        if model is not None:
            models[model.name] = model
            _check_model(model, problems)
    if not models and not problems:
        problems.append(f"{root}: holds no model folders")
    for model in models.values():
        if model.is_ensemble:
            check_ensemble(model, models, problems)
    if problems:
        raise RepositoryError(problems)
    return models
