"""Build time: resolve each ``shadow:`` challenger to an export folder, then give the model that
runs its scoring step a ``shadow.json``: the plan from that step to the answer with the
challenger's artifact in the step's place (tritonpipe/shadow/runtime.py runs it)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonpipe.ensembles.spec import PipelineSpec, shadowed_models
from tritonpipe.errors import RegistryError, SpecError
from tritonpipe.export.manifest import Manifest

SHADOW_FILE = "shadow.json"


@dataclass(frozen=True, kw_only=True)
class ShadowSource:
    """A challenger resolved to a local export folder, and the version its records carry."""

    step: str
    folder: Path
    version: str
    uri: str
    sample: float
    queue_size: int


def resolve_shadows(spec: PipelineSpec, base: Path, workdir: Path) -> list[ShadowSource]:
    """Download or locate every challenger; its signature must equal the champion's."""
    sources = []
    for name, shadow in shadowed_models(spec).items():
        where = f"models.{name}.shadow"
        if shadow.registry is not None:
            from tritonpipe.registry.mlflow_registry import resolve
            from tritonpipe.registry.transform import tracking_uri

            try:
                version = resolve(
                    shadow.registry,
                    tracking_uri=tracking_uri(spec, base),
                    dest=workdir / f"{name}__shadow",
                )
            except RegistryError as exc:
                raise SpecError(f"{where}.registry: {exc}") from None
            folder, tag, uri = version.folder, version.version, shadow.registry
        else:
            assert shadow.export is not None
            folder = (base / shadow.export).resolve()
            manifest = Manifest.read(folder)
            fmt = spec.models[name].format
            digest = manifest.artifacts.get(fmt, {}).get("sha256", "unknown")
            tag, uri = f"sha256-{digest[:12]}", str(folder)
        sources.append(
            ShadowSource(
                step=name,
                folder=folder,
                version=tag,
                uri=uri,
                sample=shadow.sample,
                queue_size=shadow.queue_size,
            )
        )
    return sources


def _check_signature(where: str, champion: dict[str, Any], manifest: Manifest) -> None:
    have = {(t.name, t.dtype, tuple(t.shape)) for t in manifest.inputs}
    have_out = {(t.name, t.dtype, tuple(t.shape)) for t in manifest.outputs}
    want = {(d["name"], d["dtype"], tuple(d["shape"])) for d in champion["inputs"]}
    want_out = {(d["name"], d["dtype"], tuple(d["shape"])) for d in champion["outputs"]}
    if not want <= have or not want_out <= have_out:
        raise SpecError(
            f"{where}: the challenger's signature (inputs {sorted(have)}, outputs "
            f"{sorted(have_out)}) differs from the champion's (inputs {sorted(want)}, outputs "
            f"{sorted(want_out)}); a shadow scores the same tensors"
        )


def challenger_plan(plan: dict[str, Any], step: str, file: str) -> dict[str, Any]:
    """``plan`` from ``step`` to its outputs, with ``file`` as that step's artifact; its inputs
    are the tensors those steps read that earlier steps (or the request) wrote."""
    names = [s["name"] for s in plan["steps"]]
    tail = [dict(s) for s in plan["steps"][names.index(step) :]]
    tail[0]["file"] = file
    written: set[str] = set()
    inputs: dict[str, dict[str, Any]] = {}
    for s in tail:
        for d in s["inputs"]:
            if d["tensor"] not in written and d["tensor"] not in inputs:
                inputs[d["tensor"]] = {**d, "name": d["tensor"]}
        written.update(d["tensor"] for d in s["outputs"])
    return {**plan, "name": f"{plan['name']}__shadow", "inputs": list(inputs.values()),
            "steps": tail}  # fmt: skip


def place_shadows(
    sources: list[ShadowSource], repository: Path, holder: Any, predlog: dict[str, dict[str, str]]
) -> None:
    """Write each challenger beside the model running its step (``holder(repository, step)``
    names it); that model must log predictions, since the log is where a shadow's outputs go."""
    for source in sources:
        where = f"models.{source.step}.shadow"
        model, _ = holder(repository, source.step)
        version = repository / model / "1"
        plan_path = version / "plan.json"
        if not plan_path.is_file() or model not in predlog:
            raise SpecError(
                f"{where}: step '{source.step}' must run in a Python model that answers a "
                "logging ensemble (fused with the steps after it, runtime: python, and the "
                "ensemble's log: set); the challenger's outputs go to that log"
            )
        plan = json.loads(plan_path.read_text())
        champion = next(s for s in plan["steps"] if s["name"] == source.step)
        manifest = Manifest.read(source.folder)
        _check_signature(where, champion, manifest)
        artifact = source.folder / manifest.artifacts[champion["kind"]]["file"]
        target = f"shadow_{source.step}{artifact.suffix}"
        shutil.copyfile(artifact, version / target)
        config = {
            "step": source.step,
            "version": source.version,
            "uri": source.uri,
            "sample": source.sample,
            "queue_size": source.queue_size,
            "plan": challenger_plan(plan, source.step, target),
        }
        (version / SHADOW_FILE).write_text(json.dumps(config, indent=1) + "\n")
