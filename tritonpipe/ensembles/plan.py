"""Compile a pipeline spec into plans: resolved steps, the tensors between them, and which steps
fuse into one Python model. The builder writes plans as Triton models; the in-process runner runs
them directly (``plan_json`` is the one format both hand to the runtime)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonpipe.ensembles.spec import Ensemble, PipelineSpec, ScoringModel, ServingOptions, Stage
from tritonpipe.ensembles.wiring import EnsembleTensors
from tritonpipe.errors import SpecError
from tritonpipe.export.manifest import Manifest
from tritonpipe.loading import load_function
from tritonpipe.records.plan import contract_options
from tritonpipe.tensors import TensorSpec, shapes_compatible

# Export formats Triton serves without the Python backend (onnxruntime_onnx, pytorch_libtorch).
NATIVE_FORMATS = ("onnx", "torchscript")


@dataclass(frozen=True)
class StepDef:
    """One stage or scoring model of the spec, resolved to files on disk."""

    name: str
    kind: str  # "stage" or an export format ("onnx", "torchscript", "aoti")
    source: Path  # the stage's file, or the exported artifact
    function: str  # the stage's function; "" for models
    kwargs: dict[str, Any]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    options: ServingOptions
    native: bool = False  # served by onnxruntime_onnx / pytorch_libtorch, not the Python backend
    value_ranges: dict[str, list[int]] = field(default_factory=dict)  # from a model's manifest

    @property
    def what(self) -> str:
        return f"{'stage' if self.kind == 'stage' else 'model'} '{self.name}'"


@dataclass(frozen=True)
class Bound:
    """A step inside an ensemble: its tensors bound to ensemble tensors (own name -> ensemble)."""

    step: StepDef
    input_map: dict[str, str]
    output_map: dict[str, str]


@dataclass
class EnsemblePlan:
    name: str
    steps: list[Bound]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int
    groups: list[list[int]] = field(default_factory=list)  # step indices fused together
    serving: ServingOptions | None = None

    def fused(self) -> bool:
        """The whole ensemble is one fused model (served under the ensemble's name)."""
        return len(self.groups) == 1 and len(self.groups[0]) == len(self.steps)


def _stage(name: str, stage: Stage, base: Path) -> StepDef:
    file_ref, _, func_name = stage.function.rpartition(":")
    source = (base / file_ref).resolve()
    func = load_function(f"{source}:{func_name}")
    accepted = inspect.signature(func).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for arg in [t.name for t in stage.inputs] + list(stage.parameters):
        if arg not in accepted and not takes_any:
            raise SpecError(
                f"stages.{name}: function '{func_name}' in {source} takes no argument '{arg}'"
            )
    return StepDef(
        name=name,
        kind="stage",
        source=source,
        function=func_name,
        kwargs=dict(stage.parameters),
        inputs=tuple(t.spec() for t in stage.inputs),
        outputs=tuple(t.spec() for t in stage.outputs),
        options=stage,
    )


def _model(name: str, model: ScoringModel, base: Path) -> StepDef:
    folder = (base / model.export).resolve()
    manifest = Manifest.read(folder)
    where = f"models.{name}"
    if model.format not in manifest.artifacts:
        raise SpecError(f"{where}.format: {folder} has no {model.format} export")
    failed = [o for o, p in manifest.parity.get(model.format, {}).items() if not p.passed]
    if failed:
        raise SpecError(f"{where}: {model.format} export failed its parity check on {failed}")
    if model.max_batch_size > manifest.max_batch_size:
        raise SpecError(
            f"{where}.max_batch_size: {model.max_batch_size} is larger than the batch "
            f"size its export was checked at ({manifest.max_batch_size})"
        )
    if model.runtime == "native" and model.format not in NATIVE_FORMATS:
        raise SpecError(
            f"{where}.runtime: native has no Triton platform for format '{model.format}' "
            f"(it serves {sorted(NATIVE_FORMATS)}); use runtime: python"
        )
    artifact = folder / manifest.artifacts[model.format]["file"]
    if not artifact.is_file():
        raise SpecError(f"{where}.export: {artifact} is missing")
    return StepDef(
        name=name,
        kind=model.format,
        source=artifact,
        function="",
        kwargs={},
        inputs=manifest.inputs,
        outputs=manifest.outputs,
        options=model,
        native=model.runtime == "native",
        value_ranges=dict(manifest.value_ranges),
    )


def resolve_steps(spec: PipelineSpec, base: Path, runtime: str | None = None) -> dict[str, StepDef]:
    """Every stage and scoring model of ``spec``; ``runtime`` overrides each model's."""
    steps = {name: _stage(name, stage, base) for name, stage in spec.stages.items()}
    for name, model in spec.models.items():
        if runtime is not None:
            model = model.model_copy(update={"runtime": runtime})
        steps[name] = _model(name, model, base)
    return steps


def _check_edge(
    producer: str, have: TensorSpec, consumer: str, want: TensorSpec, where: str
) -> None:
    if have.dtype != want.dtype or not shapes_compatible(have.shape, want.shape):
        raise SpecError(
            f"{where}: {producer} is {have.describe()} but {consumer} wants {want.describe()}"
        )


def compile_ensemble(name: str, ensemble: Ensemble, steps: dict[str, StepDef]) -> EnsemblePlan:
    """Bind the ensemble's steps to its tensors, check every edge, and group steps to fuse."""
    available: dict[str, tuple[str, TensorSpec]] = {}  # tensor -> (who produced it, spec)
    # Wiring rules (tritonpipe/ensembles/wiring.py): a tensor becomes an ensemble input only when
    # declared, and no tensor is written twice or left unread; Triton refuses the rest.
    tensors = EnsembleTensors(name, ensemble.inputs)
    bound: list[Bound] = []
    for i, ref in enumerate(ensemble.step_refs()):
        step = steps.get(ref.model)
        where = f"ensembles.{name}.steps[{i}]"
        if step is None:
            raise SpecError(f"{where}: '{ref.model}' is an ensemble; steps are stages or models")
        for key, known in (("inputs", step.inputs), ("outputs", step.outputs)):
            names = [t.name for t in known]
            for tensor in getattr(ref, key):
                if tensor not in names:
                    raise SpecError(
                        f"{where}.{key}: '{ref.model}' has no {key[:-1]} '{tensor}' "
                        f"(it has {', '.join(names)})"
                    )
        input_map = {}
        for spec in step.inputs:
            tensor = ref.inputs.get(spec.name, spec.name)
            consumer = f"{step.what} input '{spec.name}'"
            tensors.step_reads(i, ref.model, spec, tensor)
            if tensor in available:
                producer, have = available[tensor]
                _check_edge(producer, have, consumer, spec, f"{where} (tensor '{tensor}')")
            else:
                available[tensor] = (f"ensemble '{name}' input '{tensor}'", spec.renamed(tensor))
            input_map[spec.name] = tensor
        output_map = {}
        for spec in step.outputs:
            tensor = ref.outputs.get(spec.name, spec.name)
            tensors.step_writes(i, ref.model, spec, tensor)
            available[tensor] = (f"{step.what} output '{spec.name}'", spec.renamed(tensor))
            output_map[spec.name] = tensor
        bound.append(Bound(step, input_map, output_map))
    inputs, outputs = tensors.finish(ensemble.outputs or list(bound[-1].output_map.values()))
    mbs = ensemble.max_batch_size
    if mbs is None:
        mbs = min(b.step.options.max_batch_size for b in bound)
    plan = EnsemblePlan(
        name=name,
        steps=bound,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=mbs,
        serving=ensemble.serving,
    )
    plan.groups = _groups(name, ensemble, bound)
    return plan


def _kind(step: StepDef) -> str:
    return "|".join(sorted({g.kind for g in step.options.instance_groups}))


def _groups(name: str, ensemble: Ensemble, bound: list[Bound]) -> list[list[int]]:
    """Runs of adjacent Python-backend steps to fuse (``fuse: auto``), or the declared groups."""
    if ensemble.fuse == "none":
        return []
    if ensemble.fuse == "auto":
        groups: list[list[int]] = []
        for i, b in enumerate(bound):
            prev = bound[i - 1].step if i else None
            joins = prev is not None and not prev.native and _kind(prev) == _kind(b.step)
            if b.step.native:
                continue
            if joins and groups and groups[-1][-1] == i - 1:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups
    names = [b.step.name for b in bound]
    declared: list[list[int]] = []
    for g, group in enumerate(ensemble.fuse):
        where = f"ensembles.{name}.fuse[{g}]"
        unknown = [s for s in group if s not in names]
        if unknown:
            raise SpecError(f"{where}: {unknown} are not steps of ensemble '{name}'")
        idx = [names.index(s) for s in group]
        if idx != list(range(idx[0], idx[0] + len(idx))):
            raise SpecError(f"{where}: {group} are not adjacent steps in order")
        for i in idx:
            if bound[i].step.native:
                raise SpecError(f"{where}: '{names[i]}' runs natively and cannot fuse")
        if len({_kind(bound[i].step) for i in idx}) > 1:
            raise SpecError(f"{where}: {group} run on different instance kinds (cpu/gpu)")
        declared.append(idx)
    return declared


def units(plan: EnsemblePlan) -> list[tuple[str, list[int]]]:
    """The Triton models that run ``plan``'s steps, in order: (model name, step indices).

    A whole-ensemble fusion is one model under the ensemble's name; a partial fused group is
    ``<ensemble>_<first step>_<last step>``; any other step is its own model.
    """
    if plan.fused():
        return [(plan.name, list(range(len(plan.steps))))]
    fused = {g[0]: g for g in plan.groups if len(g) > 1}
    result: list[tuple[str, list[int]]] = []
    i = 0
    while i < len(plan.steps):
        group = fused.get(i, [i])
        name = plan.steps[i].step.name
        if len(group) > 1:
            name = f"{plan.name}_{name}_{plan.steps[group[-1]].step.name}"
        result.append((name, group))
        i = group[-1] + 1
    return result


def holders(
    spec: PipelineSpec, runtime: str | None = None, fuse: str | None = None
) -> dict[tuple[str, str], str]:
    """(ensemble, step) -> the model ``build`` writes to run that step, read from the spec alone
    (no export or stage file is opened)."""
    steps: dict[str, StepDef] = {}
    for name, options in [*spec.stages.items(), *spec.models.items()]:
        native = isinstance(options, ScoringModel) and (runtime or options.runtime) == "native"
        steps[name] = StepDef(name, "stage", Path(), "", {}, (), (), options, native)
    result: dict[tuple[str, str], str] = {}
    for name, ensemble in spec.ensembles.items():
        if fuse is not None:
            ensemble = ensemble.model_copy(update={"fuse": fuse})
        bound = [Bound(steps[r.model], {}, {}) for r in ensemble.step_refs() if r.model in steps]
        plan = EnsemblePlan(name, bound, [], [], 0)
        plan.groups = _groups(name, ensemble, bound)
        for model, group in units(plan):
            for i in group:
                result[(name, bound[i].step.name)] = model
    return result


def served_models(
    spec: PipelineSpec, runtime: str | None = None, fuse: str | None = None
) -> list[str]:
    """The models ``build`` writes for ``spec``, in load order: models run alone, fused models,
    then ensembles (read from the spec alone)."""
    held = holders(spec, runtime, fuse)
    models = set(held.values())
    fused = [
        m for m in dict.fromkeys(held.values()) if m not in spec.stages and m not in spec.models
    ]
    used = {step for _, step in held}
    alone = [n for n in [*spec.stages, *spec.models] if n in models or n not in used]
    ensembles = [e for e in spec.ensembles if e not in fused]
    return alone + fused + ensembles


def fused_serving(plan: EnsemblePlan, group: list[int]) -> ServingOptions:
    """How Triton serves a fused model: the ensemble's ``serving:`` or one derived from its steps.

    Derived: the smallest max_batch_size; the most instances any step asks for; dynamic batching
    when every step batches, with the smallest queue delay among them. The fused model queues
    requests once instead of at every step, so the smallest delay keeps one-request latency low.
    """
    if plan.serving is not None:
        return plan.serving
    options = [plan.steps[i].step.options for i in group]
    delays = [o.dynamic_batching for o in options]
    groups = max((o.instance_groups for o in options), key=lambda g: sum(i.count for i in g))
    batching = None
    if all(d is not None for d in delays):
        delay = min(d.max_queue_delay_microseconds for d in delays if d is not None)
        batching = {"max_queue_delay_microseconds": delay}
    return ServingOptions.model_validate(
        {
            "max_batch_size": min(o.max_batch_size for o in options),
            "dynamic_batching": batching,
            "instance_groups": [g.model_dump() for g in groups],
        }
    )


def _decl(spec: TensorSpec, tensor: str) -> dict[str, Any]:
    return {"name": spec.name, "tensor": tensor, "dtype": spec.dtype, "shape": list(spec.shape)}


def plan_json(
    name: str,
    steps: list[Bound],
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    max_batch_size: int,
    files: dict[str, str],
) -> dict[str, Any]:
    """The runtime's plan: ``files`` maps each step name to its file as the runtime finds it.
    ``contract`` holds the records contract's options; the runtime checks its ranges and NaN
    rules before any step runs."""
    return {
        "name": name,
        "max_batch_size": max_batch_size,
        "inputs": [_decl(t, t.name) for t in inputs],
        "outputs": [_decl(t, t.name) for t in outputs],
        "contract": contract_options(steps, inputs, outputs),
        "steps": [
            {
                "name": b.step.name,
                "kind": b.step.kind,
                "file": files[b.step.name],
                **(
                    {"function": b.step.function, "kwargs": b.step.kwargs}
                    if b.step.function
                    else {}
                ),
                "inputs": [_decl(t, b.input_map[t.name]) for t in b.step.inputs],
                "outputs": [_decl(t, b.output_map[t.name]) for t in b.step.outputs],
            }
            for b in steps
        ],
    }


def group_io(plan: EnsemblePlan, group: list[int]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """A fused group's own inputs (fed from outside it) and outputs (used after it)."""
    produced: dict[str, TensorSpec] = {}
    inputs: dict[str, TensorSpec] = {}
    for i in group:
        b = plan.steps[i]
        for spec in b.step.inputs:
            tensor = b.input_map[spec.name]
            if tensor not in produced and tensor not in inputs:
                inputs[tensor] = spec.renamed(tensor)
        for spec in b.step.outputs:
            produced[b.output_map[spec.name]] = spec.renamed(b.output_map[spec.name])
    later = {t.name for t in plan.outputs}
    for b in plan.steps[group[-1] + 1 :]:
        later.update(b.input_map.values())
    return list(inputs.values()), [s for t, s in produced.items() if t in later]
