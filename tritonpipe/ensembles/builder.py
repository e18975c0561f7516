"""Turn a pipeline spec into a complete, self-contained Triton model repository."""

from __future__ import annotations

import filecmp
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as pb

from tritonpipe.backend import GUARD_PY, MODEL_PY, RUNTIME_MODULE, RUNTIME_PY
from tritonpipe.backend.guard import SUFFIX as CHECKED
from tritonpipe.backend.runtime import PLAN_FILE
from tritonpipe.ensembles.cache import check_response_cache
from tritonpipe.ensembles.desugar import desugar
from tritonpipe.ensembles.plan import (
    Bound,
    EnsemblePlan,
    StepDef,
    compile_ensemble,
    fused_serving,
    group_io,
    plan_json,
    resolve_steps,
    units,
)
from tritonpipe.ensembles.spec import PipelineSpec, ServingOptions, load_spec
from tritonpipe.ensembles.warmup import (
    add_ensemble_warmups,
    add_load_warmup,
    add_warmup,
    add_zero_warmup,
    check_samples,
    config_inputs,
    sample_array,
)
from tritonpipe.errors import RepositoryError, SpecError
from tritonpipe.export.manifest import FORMATS
from tritonpipe.records.plan import CONTRACT_PARAMETER, contract_options
from tritonpipe.repository.config import (
    Step,
    ensemble_config,
    model_config,
    parse_pbtxt,
    to_pbtxt,
)
from tritonpipe.repository.validate import CONFIG, LoadedModel, validate_repository
from tritonpipe.tensors import TensorSpec

NATIVE_PLATFORMS = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}
SUFFIXES = {fmt: Path(file).suffix for fmt, file in FORMATS.items()}


def _contract_parameter(contract: dict[str, Any]) -> str | None:
    """The contract as the config parameter's value; None when it holds no rules."""
    return json.dumps(contract, separators=(",", ":")) if any(contract.values()) else None


def _write(folder: Path, config: pb.ModelConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(to_pbtxt(config))


def _python_model(
    out: Path,
    name: str,
    steps: list[Bound],
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    options: ServingOptions,
    contract: dict[str, Any] | None = None,
) -> None:
    """A Python-backend model running ``steps`` in one process: the runtime, its plan and the
    files each step needs, so the model folder is self-contained. ``contract``: the input rules
    to check, when not the steps' own (a guard's)."""
    version = out / name / "1"
    version.mkdir(parents=True)
    shutil.copyfile(MODEL_PY, version / "model.py")
    shutil.copyfile(RUNTIME_PY, version / RUNTIME_MODULE)
    files: dict[str, str] = {}
    for b in steps:
        step = b.step
        if step.kind == "stage":
            target = step.source.name
            if (version / target).exists() and not filecmp.cmp(version / target, step.source):
                raise SpecError(
                    f"{step.what}: its file {step.source} and another step's file are both "
                    f"named {target}; rename one to fuse them"
                )
        else:
            single = len(steps) == 1
            target = FORMATS[step.kind] if single else f"{step.name}{SUFFIXES[step.kind]}"
        shutil.copyfile(step.source, version / target)
        files[step.name] = target
    plan = plan_json(name, steps, inputs, outputs, options.max_batch_size, files)
    if contract is not None:
        plan["contract"] = contract
    text = json.dumps(plan, indent=2)
    # Dims on one line: [1, 8, 8] reads better than one number per line.
    text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: f"[{' '.join(m[1].split())}]", text)
    (version / PLAN_FILE).write_text(text + "\n")
    params = {
        "tritonpipe.plan": PLAN_FILE,
        "tritonpipe.steps": ",".join(b.step.name for b in steps),
    }
    if rules := _contract_parameter(plan.get("contract", {})):
        # The records contract's options, for clients that judge values as the runtime does
        # (a stream worker with --url) and profilers that draw values within its ranges.
        params[CONTRACT_PARAMETER] = rules
    config = model_config(
        name,
        inputs=inputs,
        outputs=outputs,
        serving=options.serving(),
        backend="python",
        parameters=params,
    )
    _write(out / name, config)


def _native_model(out: Path, step: StepDef) -> None:
    version = out / step.name / "1"
    version.mkdir(parents=True)
    shutil.copyfile(step.source, version / FORMATS[step.kind])
    # LibTorch binds tensors by position through the "<name>__<index>" naming convention.
    libtorch = step.kind == "torchscript"
    config = model_config(
        step.name,
        inputs=[t.renamed(f"{t.name}__{i}") if libtorch else t for i, t in enumerate(step.inputs)],
        outputs=[
            t.renamed(f"{t.name}__{i}") if libtorch else t for i, t in enumerate(step.outputs)
        ],
        serving=step.options.serving(),
        platform=NATIVE_PLATFORMS[step.kind],
    )
    _write(out / step.name, config)


def _config_name(step: StepDef, tensor: str, position: int) -> str:
    """The tensor's name in the step's own config (LibTorch's positional names when native)."""
    return f"{tensor}__{position}" if step.native and step.kind == "torchscript" else tensor


def _standalone(out: Path, step: StepDef) -> None:
    if step.native:
        _native_model(out, step)
    else:
        same = {t.name: t.name for t in step.inputs}
        bound = Bound(step, same, {t.name: t.name for t in step.outputs})
        _python_model(out, step.name, [bound], list(step.inputs), list(step.outputs), step.options)
    if step.kind != "stage":  # a scoring model takes zeros; a user's stage may not
        config = parse_pbtxt((out / step.name / CONFIG).read_text())
        add_zero_warmup(config, config_inputs(config))
        _write(out / step.name, config)


def _ensemble(out: Path, plan: EnsemblePlan) -> list[str]:
    """Write the ensemble's fused models and its config; the steps it needs standalone."""
    if plan.fused():
        options = fused_serving(plan, plan.groups[0])
        if plan.serving is None:
            options = options.model_copy(update={"max_batch_size": plan.max_batch_size})
        _python_model(out, plan.name, plan.steps, plan.inputs, plan.outputs, options)
        return []
    steps: list[Step] = []
    standalone: list[str] = []
    for name, group in units(plan):
        if len(group) > 1:
            inputs, outputs = group_io(plan, group)
            bounds = [plan.steps[j] for j in group]
            _python_model(out, name, bounds, inputs, outputs, fused_serving(plan, group))
            steps.append(
                Step(
                    model=name,
                    input_map={t.name: t.name for t in inputs},
                    output_map={t.name: t.name for t in outputs},
                )
            )
            continue
        b = plan.steps[group[0]]
        standalone.append(b.step.name)
        checked = _guard(out, plan, b, steps) if b.step.native else {}
        steps.append(
            Step(
                model=b.step.name,
                input_map={
                    _config_name(b.step, t.name, k): checked.get(
                        b.input_map[t.name], b.input_map[t.name]
                    )
                    for k, t in enumerate(b.step.inputs)
                },
                output_map={
                    _config_name(b.step, t.name, k): b.output_map[t.name]
                    for k, t in enumerate(b.step.outputs)
                },
            )
        )
    config = ensemble_config(
        plan.name,
        inputs=plan.inputs,
        outputs=plan.outputs,
        max_batch_size=plan.max_batch_size,
        steps=steps,
    )
    if rules := _contract_parameter(contract_options(plan.steps, plan.inputs, plan.outputs)):
        config.parameters[CONTRACT_PARAMETER].string_value = rules
    _write(out / plan.name, config)
    (out / plan.name / "1").mkdir()
    (out / plan.name / "1" / ".gitkeep").write_text("")
    return standalone


def _guard(out: Path, plan: EnsemblePlan, native: Bound, steps: list[Step]) -> dict[str, str]:
    """In front of a native step that reads ensemble inputs, a Python-backend guard model
    (``<ensemble>_<step>_guard``) that checks them by the contract the Python runtime would
    check (the model's manifest ``value_ranges``; NaN and Inf refused: a 400 naming the input)
    and passes them on; returns ensemble tensor -> its checked name, for the native step."""
    feeds = set(native.input_map.values())
    inputs = [t for t in plan.inputs if t.name in feeds]
    if not inputs:
        return {}
    name = f"{plan.name}_{native.step.name}_guard"
    outputs = [t.renamed(f"{t.name}{CHECKED}") for t in inputs]
    step = StepDef(
        name="guard",
        kind="stage",
        source=GUARD_PY,
        function="passthrough",
        kwargs={},
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        options=ServingOptions(max_batch_size=native.step.options.max_batch_size),
    )
    same = {t.name: t.name for t in inputs}
    bound = Bound(step, same, {t.name: t.name for t in outputs})
    rules = contract_options([native], inputs, [])
    _python_model(out, name, [bound], inputs, outputs, step.options, contract=rules)
    checked = {t.name: f"{native.step.name}_{t.name}{CHECKED}" for t in inputs}
    steps.append(
        Step(
            model=name,
            input_map=same,
            output_map={f"{t.name}{CHECKED}": checked[t.name] for t in inputs},
        )
    )
    return checked


def _build_all(
    spec: PipelineSpec, base: Path, out: Path, runtime: str | None, fuse: str | None
) -> None:
    steps = resolve_steps(spec, base, runtime)
    in_ensembles: set[str] = set()
    needed: set[str] = set()
    for name, ensemble in spec.ensembles.items():
        if fuse is not None:
            ensemble = ensemble.model_copy(update={"fuse": fuse})
        plan = compile_ensemble(name, ensemble, steps)
        in_ensembles.update(b.step.name for b in plan.steps)
        needed.update(_ensemble(out, plan))
    for name, step in steps.items():
        if name in needed or name not in in_ensembles:
            _standalone(out, step)


def _enable_cache(out: Path, spec: PipelineSpec) -> None:
    """``response_cache { enable: true }`` in the config of each cached ensemble's top model
    (the fused model, or the ensemble itself): Triton keys the cache on its inputs."""
    for name, ensemble in spec.ensembles.items():
        if ensemble.response_cache:
            config = parse_pbtxt((out / name / CONFIG).read_text())
            config.response_cache.enable = True
            _write(out / name, config)


def _add_warmups(out: Path, spec: PipelineSpec, base: Path, where: str) -> None:
    """``model_warmup`` from each ensemble's samples, in its fused model, or in every step model
    of an unfused ensemble (Triton does not warm ensembles); samples name ensemble inputs."""
    for name, ensemble in spec.ensembles.items():
        if not ensemble.warmup:
            continue
        samples = {t: base / p for t, p in ensemble.warmup.items()}
        config = parse_pbtxt((out / name / CONFIG).read_text())
        what = f"{where}: ensembles.{name}.warmup"
        logs_or_looks_up = ensemble.log is not None or any(
            r.model in spec.features for r in ensemble.step_refs()
        )
        if config.platform == "ensemble":
            if logs_or_looks_up:
                raise SpecError(
                    f"{what}: an unfused ensemble that logs its predictions or looks features up "
                    "cannot be warmed (Triton's warmup of its steps would be logged, and the "
                    "lookup would need the online store at build time); fuse it, or drop warmup"
                )
            add_ensemble_warmups(out, config, samples, what)
            continue
        if logs_or_looks_up:
            inputs = config_inputs(config)  # logs or looks up: warmed in its initialize
            check_samples([t.name for t in inputs], samples, config.name, what)
            rows = {t.name: sample_array(t, samples[t.name], what) for t in inputs}
            add_load_warmup(out / name / "1", inputs, rows)
            continue
        add_warmup(out / name, config, config_inputs(config), samples, what)
        _write(out / name, config)


def _check_target(out: Path) -> None:
    if not out.exists():
        return
    strays = [p.name for p in out.iterdir() if not (p.is_dir() and (p / CONFIG).is_file())]
    if strays:
        raise SpecError(
            f"{out}: holds {sorted(strays)[:5]}, which are not model folders; "
            "build into an empty folder or an existing repository"
        )


def build_repository(
    spec_path: Path, out: Path, *, runtime: str | None = None, fuse: str | None = None
) -> dict[str, LoadedModel]:
    """Build the repository for ``spec_path`` into ``out`` (replaced whole), then validate it.

    Paths in the spec are relative to its folder. ``runtime`` ("python" or "native") overrides
    every scoring model's runtime; ``fuse`` ("auto" or "none") every ensemble's fusion. A model
    is written on its own when an ensemble runs it unfused or no ensemble uses it. Nothing is
    written to ``out`` unless validation passes.
    """
    spec = load_spec(spec_path)
    check_response_cache(spec, str(spec_path))
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp) / "repo"
        staging.mkdir()
        # Feature lookups -> generated stages, registry: -> export folders (before); Feast
        # config/modules, registry versions, prediction-log parameters (after).
        plan = desugar(spec, spec_path.parent.resolve(), Path(tmp) / "generated", fuse)
        _build_all(plan.spec, spec_path.parent.resolve(), staging, runtime, fuse)
        plan.finish(staging)
        _enable_cache(staging, spec)
        _add_warmups(staging, spec, spec_path.parent.resolve(), str(spec_path))
        try:
            validate_repository(staging)
        except RepositoryError as exc:  # report paths where the user will look for them
            raise RepositoryError(
                [p.replace(str(staging), str(out)) for p in exc.problems]
            ) from None
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return validate_repository(out)
