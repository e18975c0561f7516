"""The two builds a canary needs from one spec: the champion (shadows dropped) and the
challenger (each shadowed model replaced by its shadow's version), and promotion's alias move."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tritonpipe.ensembles.spec import load_spec, shadowed_models
from tritonpipe.errors import SpecError


def variant(data: dict[str, Any], which: str) -> dict[str, Any]:
    """The spec's YAML data as the ``champion`` or the ``challenger`` build sees it."""
    models = {}
    for name, model in (data.get("models") or {}).items():
        model = dict(model)
        shadow = model.pop("shadow", None)
        if which == "challenger" and shadow is not None:
            model.pop("registry", None)
            model.pop("export", None)
            if shadow.get("registry") is not None:
                model["registry"] = shadow["registry"]
            else:
                model["export"] = shadow["export"]
        models[name] = model
    return {**data, "models": models}


@contextlib.contextmanager
def variant_spec(spec_path: Path, which: str) -> Iterator[Path]:
    """A temporary spec file beside ``spec_path`` (its relative paths still hold)."""
    if which not in ("champion", "challenger"):
        raise SpecError(f"variant {which!r}: champion or challenger")
    spec = load_spec(spec_path)
    if which == "challenger" and not shadowed_models(spec):
        raise SpecError(
            f"{spec_path}: no model has a shadow:, so there is no challenger to build "
            "(add shadow: {registry: models:/NAME@challenger} to the scoring model)"
        )
    data = variant(yaml.safe_load(spec_path.read_text()), which)
    fd, name = tempfile.mkstemp(prefix=f".{spec_path.stem}.{which}.", suffix=".yaml",
                                dir=spec_path.parent)  # fmt: skip
    try:
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(data, out, sort_keys=False)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def promote_aliases(spec_path: Path) -> list[str]:
    """Point each shadowed model's registry alias at its shadow's version; what moved."""
    from tritonpipe.registry.mlflow_registry import move_alias, version_of
    from tritonpipe.registry.transform import tracking_uri

    spec = load_spec(spec_path)
    uri = tracking_uri(spec, spec_path.parent.resolve())
    moved = []
    for name, shadow in shadowed_models(spec).items():
        champion = spec.models[name].registry
        if champion is None or shadow.registry is None:
            raise SpecError(
                f"models.{name}: promotion moves a registry alias; both the model and its "
                "shadow must name registry versions (models:/NAME@champion, @challenger)"
            )
        version = version_of(shadow.registry, tracking_uri=uri)
        before = move_alias(champion, version, tracking_uri=uri)
        if before is not None and before != version:
            move_alias(champion.rsplit("@", 1)[0] + "@previous", before, tracking_uri=uri)
        moved.append(f"{champion} -> version {version} (was {before})")
    return moved
