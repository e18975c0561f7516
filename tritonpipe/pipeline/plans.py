"""Find the runtime plan of a pipeline: compiled from a spec, or read from a built repository
(a fused model's ``plan.json``, or an ensemble's steps composed into one plan)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as pb

from tritonpipe.backend.runtime import PLAN_FILE
from tritonpipe.ensembles.plan import Bound, compile_ensemble, plan_json, resolve_steps
from tritonpipe.ensembles.spec import load_spec
from tritonpipe.errors import SpecError
from tritonpipe.repository.validate import load_model, validate_repository
from tritonpipe.tensors import dtype

NATIVE_KINDS = {
    "onnxruntime_onnx": ("onnx", "model.onnx"),
    "pytorch_libtorch": ("torchscript", "model.pt"),
}


def needs_build(path: Path) -> bool:
    """The spec uses parts that exist only in a built repository (feature lookups, registry
    models, prediction logs)."""
    spec = load_spec(path)
    return bool(
        spec.features
        or any(m.registry for m in spec.models.values())
        or any(e.log for e in spec.ensembles.values())
    )


def default_name(path: str | Path) -> str | None:
    """The spec's only ensemble, if it has exactly one."""
    ensembles = list(load_spec(Path(path)).ensembles)
    return ensembles[0] if len(ensembles) == 1 else None


def from_spec(path: Path, name: str | None) -> dict[str, Any]:
    """The plan of ensemble (or single stage/model) ``name`` in the spec at ``path``."""
    spec = load_spec(path)
    steps = resolve_steps(spec, path.parent.resolve(), runtime="python")
    names = list(spec.ensembles) + list(steps)
    if name is None:
        if len(spec.ensembles) != 1:
            raise SpecError(f"{path}: name one of {', '.join(names)}")
        name = next(iter(spec.ensembles))
    files = {s.name: str(s.source) for s in steps.values()}
    if name in spec.ensembles:
        plan = compile_ensemble(name, spec.ensembles[name], steps)
        return plan_json(name, plan.steps, plan.inputs, plan.outputs, plan.max_batch_size, files)
    if name not in steps:
        raise SpecError(f"{path}: no ensemble, stage or model '{name}' (it has {', '.join(names)})")
    step = steps[name]
    bound = Bound(
        step, {t.name: t.name for t in step.inputs}, {t.name: t.name for t in step.outputs}
    )
    return plan_json(
        name, [bound], list(step.inputs), list(step.outputs), step.options.max_batch_size, files
    )


def _decls(tensors: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "tensor": t.name,
            "dtype": dtype(pb.DataType.Name(t.data_type)).triton,
            "shape": list(t.dims),
        }
        for t in tensors
    ]


def _latest(folder: Path) -> Path:
    versions = sorted(
        (p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    return versions[-1]


def _model_plan(repo: Path, name: str) -> dict[str, Any]:
    """A non-ensemble model's plan, with every file path absolute."""
    problems: list[str] = []
    model = load_model(repo / name, problems)
    if model is None:
        raise SpecError("\n".join(problems))
    version = _latest(model.folder)
    config = model.config
    if (version / PLAN_FILE).is_file():
        plan: dict[str, Any] = json.loads((version / PLAN_FILE).read_text())
        for step in plan["steps"]:
            step["file"] = str(version / step["file"])
        return plan
    kind, file = NATIVE_KINDS.get(config.platform, (None, None))
    if kind is None or file is None:
        raise SpecError(
            f"{model.config_path}: model '{name}' is neither a tritonpipe plan nor ONNX/LibTorch"
        )
    inputs, outputs = _decls(config.input), _decls(config.output)
    step = {
        "name": name,
        "kind": kind,
        "file": str(version / file),
        "inputs": inputs,
        "outputs": outputs,
    }
    return {
        "name": name,
        "max_batch_size": config.max_batch_size,
        "inputs": inputs,
        "outputs": outputs,
        "steps": [step],
    }


def from_repository(repo: Path, name: str) -> dict[str, Any]:
    """The plan of model ``name`` in a built repository; an ensemble's steps run in order."""
    repo = repo.resolve()
    models = validate_repository(repo)
    if name not in models:
        raise SpecError(f"{repo}: no model '{name}' (it has {', '.join(sorted(models))})")
    model = models[name]
    if not model.is_ensemble:
        return _model_plan(repo, name)
    steps: list[dict[str, Any]] = []
    contract: dict[str, Any] = {"ranges": {}, "allow_nan": [], "categories": {}, "binary": []}
    for step in model.config.ensemble_scheduling.step:
        sub = _model_plan(repo, step.model_name)
        outer = {**dict(step.input_map), **dict(step.output_map)}
        _merge_contract(contract, sub.get("contract", {}), outer)
        # Tensors inside a fused model stay private to it: prefixed with the model's name.
        for part in sub["steps"]:
            for decl in part["inputs"] + part["outputs"]:
                decl["tensor"] = outer.get(decl["tensor"], f"{step.model_name}/{decl['tensor']}")
            steps.append(part)
    config = model.config
    return {
        "name": name,
        "max_batch_size": config.max_batch_size,
        "inputs": _decls(config.input),
        "outputs": _decls(config.output),
        "contract": contract,
        "steps": steps,
    }


def _merge_contract(into: dict[str, Any], sub: dict[str, Any], outer: dict[str, str]) -> None:
    """A step model's contract options under the ensemble's tensor names."""
    for key in ("ranges", "categories"):
        for name, value in sub.get(key, {}).items():
            if name in outer:
                into[key].setdefault(outer[name], value)
    for key in ("allow_nan", "binary"):
        into[key].extend(outer[n] for n in sub.get(key, []) if n in outer)
