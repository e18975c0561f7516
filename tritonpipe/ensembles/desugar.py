"""Spec transforms run around the builder, so it only ever sees stages, export folders and
ensembles:

  before  `features:` lookups become generated stages (tritonpipe.features.transform);
          `registry:` models are downloaded into export folders (tritonpipe.registry.transform)
          and `${models.m.tags.k}` stage parameters are filled in.
  after   the lookups' Feast config and modules are copied into their models; registry models'
          configs record the version; the model running a logging ensemble's last step (itself,
          or the fused model that holds it) gets `tritonpipe.predlog`.

Feast and MLflow are imported only when a spec uses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonpipe.ensembles.spec import PipelineSpec, ScoringModel, StepRef
from tritonpipe.errors import SpecError
from tritonpipe.repository.config import parse_pbtxt, to_pbtxt
from tritonpipe.repository.validate import CONFIG


@dataclass
class Desugared:
    """The plain spec to build, and what to add to the built repository afterwards."""

    spec: PipelineSpec
    workdir: Path
    lookups: list[str] = field(default_factory=list)
    parameters: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> extra params
    # model -> (spec field, last step, tensors a record reads): checked once the model is built
    log_inputs: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    shadows: list[Any] = field(default_factory=list)  # tritonpipe.shadow.ShadowSource

    def finish(self, repository: Path) -> None:
        """Complete the built repository (before it is validated)."""
        from tritonpipe.features.transform import place

        for name in self.lookups:
            place(name, self.workdir, repository)
        for step, params in self.parameters.items():
            model, tensors = _holder(repository, step)
            where, last, wanted = self.log_inputs.get(step, ("", step, []))
            missing = [t for t in wanted if t not in tensors]
            if missing:
                raise SpecError(
                    f"{where}: the last step '{last}' has no input {missing} to log "
                    f"(it has {sorted(tensors)}); add them to its inputs"
                )
            path = repository / model / CONFIG
            config = parse_pbtxt(path.read_text())
            for key, value in sorted(params.items()):
                if model != step and key.startswith("tritonpipe.registry."):
                    key = key.replace("tritonpipe.registry.", f"tritonpipe.registry.{step}.", 1)
                config.parameters[key].string_value = value
            path.write_text(to_pbtxt(config))
        if self.shadows:
            from tritonpipe.shadow.build import place_shadows

            logging = {
                _holder(repository, step)[0]: p
                for step, p in self.parameters.items()
                if "tritonpipe.predlog" in p
            }
            place_shadows(self.shadows, repository, _holder, logging)


def _holder(repository: Path, name: str) -> tuple[str, set[str]]:
    """The built model ``name`` (or the fused model that runs step ``name``), and the tensors a
    record can read there: a single step's inputs, or every tensor of a fused plan."""
    path = repository / name / CONFIG
    if not path.is_file():
        for candidate in sorted(repository.glob(f"*/{CONFIG}")):
            params = parse_pbtxt(candidate.read_text()).parameters
            if "tritonpipe.steps" in params and name in params[
                "tritonpipe.steps"
            ].string_value.split(","):
                path = candidate
                break
        else:
            raise SpecError(f"{repository}: no built model runs step '{name}'")
    config = parse_pbtxt(path.read_text())
    plan = path.parent / "1" / "plan.json"
    if plan.is_file():
        steps = json.loads(plan.read_text())["steps"]
        if len(steps) > 1:
            return path.parent.name, {
                d["tensor"] for s in steps for d in s["inputs"] + s["outputs"]
            }
    return path.parent.name, {t.name for t in config.input}


def _model_identity(name: str, model: ScoringModel, base: Path, versions: dict[str, Any]) -> str:
    if name in versions:
        return f"{versions[name].name}:{versions[name].version}"
    from tritonpipe.export.manifest import Manifest

    artifact = Manifest.read((base / model.export).resolve()).artifacts.get(model.format, {})
    return f"{name}:sha256-{artifact.get('sha256', 'unknown')[:12]}"


def _logging(
    spec: PipelineSpec, plan: Desugared, base: Path, versions: dict[str, Any], fuse: str | None
) -> None:
    from tritonpipe.ensembles.plan import holders

    held = holders(spec, fuse=fuse)
    for ens_name, ensemble in spec.ensembles.items():
        if ensemble.log is None:
            continue
        refs: list[StepRef] = ensemble.step_refs()
        last = refs[-1].model
        where = f"ensembles.{ens_name}.log"
        # The model answering this ensemble logs; another ensemble must not run through it.
        model = held[(ens_name, last)]
        others = sorted({e for (e, _), m in held.items() if m == model and e != ens_name})
        if others:
            raise SpecError(
                f"{where}: its last step '{last}' also runs in {others}, whose requests would be "
                "logged as this pipeline's; give this ensemble its own last step"
            )
        scoring = [r.model for r in refs if r.model in spec.models]
        ids = [_model_identity(m, spec.models[m], base, versions) for m in scoring]
        log = ensemble.log
        config = {
            "pipeline": ens_name,
            "model": ",".join(i.rsplit(":", 1)[0] for i in ids),
            "model_version": ",".join(i.rsplit(":", 1)[1] for i in ids),
            "sink": log.sink,
            "entity_keys": log.entity_keys,
            "features": log.features,
            "queue_size": log.queue_size,
            # BYTES outputs that are raw bytes (logged as base64); the others are text.
            "binary": sorted(
                t.name
                for name in {r.model for r in refs} & set(spec.stages)
                for t in spec.stages[name].outputs
                if t.binary
            ),
        }
        plan.parameters.setdefault(model, {})["tritonpipe.predlog"] = json.dumps(config)
        wanted = list(log.entity_keys) + ([log.features] if log.features else [])
        plan.log_inputs[model] = (where, last, wanted)


def desugar(spec: PipelineSpec, base: Path, workdir: Path, fuse: str | None = None) -> Desugared:
    """Turn feature lookups and registry models into plain parts; see the module docstring."""
    workdir = workdir.resolve()
    plan = Desugared(spec=spec, workdir=workdir)
    uses_registry = any(m.registry for m in spec.models.values())
    if not (spec.features or uses_registry or any(e.log for e in spec.ensembles.values())):
        return plan
    workdir.mkdir(parents=True, exist_ok=True)
    stages = dict(spec.stages)
    models = dict(spec.models)
    versions: dict[str, Any] = {}
    if uses_registry:
        from tritonpipe.registry.transform import resolve_models, substitute

        models, versions = resolve_models(spec, base, workdir / "registry")
        for name, stage in spec.stages.items():
            params = {
                k: substitute(f"stages.{name}.parameters.{k}", v, versions)
                for k, v in stage.parameters.items()
            }
            stages[name] = stage.model_copy(update={"parameters": params})
        for name, version in versions.items():
            plan.parameters[name] = {
                "tritonpipe.registry.uri": version.uri,
                "tritonpipe.registry.name": version.name,
                "tritonpipe.registry.version": version.version,
            }
    if spec.features:
        from tritonpipe.features.transform import desugar_lookup

        for name, lookup in spec.features.items():
            stages[name] = desugar_lookup(name, lookup, base, workdir / "features")
            plan.lookups.append(name)
        plan.workdir = workdir / "features"
    if any(m.shadow for m in spec.models.values()):
        from tritonpipe.shadow.build import resolve_shadows

        plan.shadows = resolve_shadows(spec, base, workdir / "shadow")
    plan.spec = spec.model_copy(update={"stages": stages, "models": models, "features": {}})
    _logging(plan.spec, plan, base, versions, fuse)
    return plan
