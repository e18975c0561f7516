"""Build time: ``registry:`` scoring models become local export folders, and stage parameters
may quote a version's tags or metrics as ``${models.<model>.tags.<key>}``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tritonpipe.ensembles.spec import PipelineSpec, ScoringModel
from tritonpipe.errors import RegistryError, SpecError
from tritonpipe.registry.mlflow_registry import RegistryVersion, resolve

_REF = re.compile(r"^\$\{models\.(?P<model>[\w-]+)\.(?P<kind>tags|metrics)\.(?P<key>[\w.-]+)\}$")
DEFAULT_DB = "mlflow.db"


def tracking_uri(spec: PipelineSpec, base: Path) -> str:
    """The spec's registry URI; relative SQLite paths (and the default) are relative to ``base``."""
    uri = spec.registry_uri or f"sqlite:///{DEFAULT_DB}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def resolve_models(
    spec: PipelineSpec, base: Path, workdir: Path
) -> tuple[dict[str, ScoringModel], dict[str, RegistryVersion]]:
    """Download every ``registry:`` model into ``workdir``; models then name those folders."""
    models: dict[str, ScoringModel] = {}
    versions: dict[str, RegistryVersion] = {}
    for name, model in spec.models.items():
        if model.registry is None:
            models[name] = model
            continue
        try:
            version = resolve(
                model.registry, tracking_uri=tracking_uri(spec, base), dest=workdir / name
            )
        except RegistryError as exc:
            raise SpecError(f"models.{name}.registry: {exc}") from None
        versions[name] = version
        models[name] = model.model_copy(update={"export": version.folder, "registry": None})
    return models, versions


def substitute(where: str, value: Any, versions: dict[str, RegistryVersion]) -> Any:
    """Replace a ``${models.m.tags.k}`` parameter by the version's value."""
    match = _REF.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    version = versions.get(match["model"])
    if version is None:
        raise SpecError(f"{where}: {value}: model '{match['model']}' has no registry version")
    table: dict[str, str] | dict[str, float] = (
        version.tags if match["kind"] == "tags" else version.metrics
    )
    if match["key"] not in table:
        raise SpecError(
            f"{where}: {value}: {version.uri} (version {version.version}) has no "
            f"{match['kind'][:-1]} '{match['key']}' (it has {sorted(table)})"
        )
    return table[match["key"]]
