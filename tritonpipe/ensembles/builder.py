"""Turn a pipeline spec into a complete, self-contained Triton model repository."""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tritonpipe.backend import MODEL_PY
from tritonpipe.ensembles.desugar import desugar
from tritonpipe.ensembles.spec import Ensemble, PipelineSpec, ScoringModel, Stage, load_spec
from tritonpipe.errors import RepositoryError, SpecError
from tritonpipe.export.manifest import FORMATS, Manifest
from tritonpipe.loading import load_function
from tritonpipe.repository.config import Step, ensemble_config, model_config, to_pbtxt
from tritonpipe.repository.validate import CONFIG, LoadedModel, validate_repository
from tritonpipe.tensors import TensorSpec

NATIVE_PLATFORMS = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}


@dataclass(frozen=True)
class _Io:
    """A model's tensors: (name in its config, spec with the plain name) per input and output."""

    inputs: list[tuple[str, TensorSpec]]
    outputs: list[tuple[str, TensorSpec]]
    max_batch_size: int


def _write(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(text)


def _build_stage(name: str, stage: Stage, base: Path, out: Path) -> _Io:
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
    version = out / name / "1"
    version.mkdir(parents=True)
    shutil.copyfile(MODEL_PY, version / "model.py")
    shutil.copyfile(source, version / source.name)
    inputs = [t.spec() for t in stage.inputs]
    outputs = [t.spec() for t in stage.outputs]
    params = {
        "tritonpipe.kind": "stage",
        "tritonpipe.function": f"{source.stem}:{func_name}",
        "tritonpipe.kwargs": json.dumps(stage.parameters, sort_keys=True),
    }
    config = model_config(
        name,
        inputs=inputs,
        outputs=outputs,
        serving=stage.serving(),
        backend="python",
        parameters=params,
    )
    _write(out / name, to_pbtxt(config))
    return _Io([(t.name, t) for t in inputs], [(t.name, t) for t in outputs], stage.max_batch_size)


def _build_model(name: str, model: ScoringModel, base: Path, out: Path) -> _Io:
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
    artifact = folder / manifest.artifacts[model.format]["file"]
    if not artifact.is_file():
        raise SpecError(f"{where}.export: {artifact} is missing")
    version = out / name / "1"
    version.mkdir(parents=True)
    shutil.copyfile(artifact, version / FORMATS[model.format])
    inputs, outputs = list(manifest.inputs), list(manifest.outputs)
    if model.runtime == "native":
        # LibTorch binds tensors by position through the "<name>__<index>" naming convention.
        rename = (
            (lambda t, i: TensorSpec(name=f"{t.name}__{i}", dtype=t.dtype, shape=t.shape))
            if model.format == "torchscript"
            else (lambda t, i: t)
        )
        cfg_in = [rename(t, i) for i, t in enumerate(inputs)]
        cfg_out = [rename(t, i) for i, t in enumerate(outputs)]
        config = model_config(
            name,
            inputs=cfg_in,
            outputs=cfg_out,
            serving=model.serving(),
            platform=NATIVE_PLATFORMS[model.format],
        )
    else:
        shutil.copyfile(MODEL_PY, version / "model.py")
        cfg_in, cfg_out = inputs, outputs
        config = model_config(
            name,
            inputs=inputs,
            outputs=outputs,
            serving=model.serving(),
            backend="python",
            parameters={"tritonpipe.kind": model.format},
        )
    _write(out / name, to_pbtxt(config))
    return _Io(
        [(c.name, t) for c, t in zip(cfg_in, inputs, strict=True)],
        [(c.name, t) for c, t in zip(cfg_out, outputs, strict=True)],
        model.max_batch_size,
    )


def _build_ensemble(name: str, ensemble: Ensemble, built: dict[str, _Io], out: Path) -> None:
    available: dict[str, TensorSpec] = {}
    ens_inputs: list[TensorSpec] = []
    steps: list[Step] = []
    for i, ref in enumerate(ensemble.step_refs()):
        io = built.get(ref.model)
        where = f"ensembles.{name}.steps[{i}]"
        if io is None:
            raise SpecError(f"{where}: '{ref.model}' is an ensemble; steps are stages or models")
        plain_in = {t.name: c for c, t in io.inputs}
        plain_out = {t.name: c for c, t in io.outputs}
        for key, known in (("inputs", plain_in), ("outputs", plain_out)):
            for tensor in getattr(ref, key):
                if tensor not in known:
                    raise SpecError(
                        f"{where}.{key}: '{ref.model}' has no {key[:-1]} '{tensor}' "
                        f"(it has {', '.join(known)})"
                    )
        input_map = {}
        for config_name, spec in io.inputs:
            tensor = ref.inputs.get(spec.name, spec.name)
            if tensor not in available:
                available[tensor] = TensorSpec(name=tensor, dtype=spec.dtype, shape=spec.shape)
                ens_inputs.append(available[tensor])
            input_map[config_name] = tensor
        output_map = {}
        for config_name, spec in io.outputs:
            tensor = ref.outputs.get(spec.name, spec.name)
            available[tensor] = TensorSpec(name=tensor, dtype=spec.dtype, shape=spec.shape)
            output_map[config_name] = tensor
        steps.append(Step(model=ref.model, input_map=input_map, output_map=output_map))
    wanted = ensemble.outputs or list(steps[-1].output_map.values())
    missing = [t for t in wanted if t not in available]
    if missing:
        raise SpecError(f"ensembles.{name}.outputs: no step produces {missing}")
    mbs = ensemble.max_batch_size
    if mbs is None:
        mbs = min(built[s.model].max_batch_size for s in steps)
    config = ensemble_config(
        name,
        inputs=ens_inputs,
        outputs=[available[t] for t in wanted],
        max_batch_size=mbs,
        steps=steps,
    )
    _write(out / name, to_pbtxt(config))
    (out / name / "1").mkdir()
    (out / name / "1" / ".gitkeep").write_text("")


def _build_all(spec: PipelineSpec, base: Path, out: Path, runtime: str | None) -> None:
    built: dict[str, _Io] = {}
    for name, stage in spec.stages.items():
        built[name] = _build_stage(name, stage, base, out)
    for name, model in spec.models.items():
        if runtime is not None:
            model = model.model_copy(update={"runtime": runtime})
        built[name] = _build_model(name, model, base, out)
    for name, ensemble in spec.ensembles.items():
        _build_ensemble(name, ensemble, built, out)


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
    spec_path: Path, out: Path, *, runtime: str | None = None
) -> dict[str, LoadedModel]:
    """Build the repository for ``spec_path`` into ``out`` (replaced whole), then validate it.

    Paths in the spec are relative to its folder. ``runtime`` ("python" or "native") overrides
    every scoring model's runtime. Nothing is written to ``out`` unless validation passes.
    """
    spec = load_spec(spec_path)
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp) / "repo"
        staging.mkdir()
        # issue 10: feature lookups -> generated stages, registry: -> export folders (before);
        # Feast config/modules, registry versions, prediction-log parameters (after).
        plan = desugar(spec, spec_path.parent.resolve(), Path(tmp) / "generated")
        _build_all(plan.spec, spec_path.parent.resolve(), staging, runtime)
        plan.finish(staging)
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
