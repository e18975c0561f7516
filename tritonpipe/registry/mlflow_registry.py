"""Export folders as MLflow model-registry versions, and back.

A version's artifacts are the export folder (model files + manifest.json) under ``export/``; its
tags carry what serving needs (feature service, decision threshold). The embedded default is a
local file registry (``file:/path/mlruns``); a tracking-server URI works the same for teams.
MLflow is imported here only.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tritonpipe.errors import RegistryError
from tritonpipe.export.manifest import Manifest, sha256

ARTIFACT_PATH = "export"
PROFILE_PATH = "monitor"  # the reference profile (monitor/profile.json) of a version
_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9_.-]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


@dataclass(frozen=True, kw_only=True)
class RegistryVersion:
    """A downloaded, checked registry version."""

    name: str
    version: str
    uri: str
    folder: Path
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name/3`` -> (name, "3", None); ``models:/name@champion`` -> (name, None, alias)."""
    match = _URI.match(uri)
    if match is None:
        raise RegistryError(
            f"{uri!r}: expected 'models:/<name>/<version>' or 'models:/<name>@<alias>'"
        )
    return match["name"], match["version"], match["alias"]


def _client(tracking_uri: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of an embedded SQLite registry live beside its database, not in the cwd."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def register(
    export_dir: Path,
    *,
    name: str,
    tracking_uri: str,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    alias: str | None = None,
    profile: Path | None = None,
) -> str:
    """Log ``export_dir`` as a run's artifacts and register it as a new version of ``name``;
    ``profile`` (a reference profile JSON file) is stored as ``monitor/profile.json`` beside it."""
    import mlflow

    Manifest.read(export_dir)  # refuse folders that are not checked exports
    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(name, artifact_location=_artifact_root(tracking_uri))
    )
    run = client.create_run(experiment_id, tags=tags or {})
    for key, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, key, value)
    client.log_artifacts(run.info.run_id, str(export_dir), ARTIFACT_PATH)
    if profile is not None:
        client.log_artifact(run.info.run_id, str(profile), PROFILE_PATH)
    client.set_terminated(run.info.run_id)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name)
    source = f"{run.info.artifact_uri}/{ARTIFACT_PATH}"
    version = client.create_model_version(name, source, run_id=run.info.run_id, tags=tags or {})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def _check(folder: Path, uri: str) -> None:
    manifest = Manifest.read(folder)
    for fmt, artifact in manifest.artifacts.items():
        path = folder / artifact["file"]
        if not path.is_file():
            raise RegistryError(f"{uri}: {fmt} artifact {artifact['file']} is missing")
        if sha256(path) != artifact["sha256"]:
            raise RegistryError(
                f"{uri}: {artifact['file']} does not match the sha256 in its manifest"
            )


def resolve(uri: str, *, tracking_uri: str, dest: Path) -> RegistryVersion:
    """Download the version ``uri`` names into ``dest`` and check its manifest's sha256s."""
    import mlflow

    name, number, alias = parse_uri(uri)
    client = _client(tracking_uri)
    try:
        mv = (
            client.get_model_version(name, number)
            if number
            else client.get_model_version_by_alias(name, alias)
        )
        run = client.get_run(mv.run_id) if mv.run_id else None
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=mv.source, dst_path=tmp, tracking_uri=tracking_uri
                )
            )
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(local, dest)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"{uri} in {tracking_uri}: {exc.message}") from None
    _check(dest, uri)
    return RegistryVersion(
        name=name,
        version=str(mv.version),
        uri=uri,
        folder=dest,
        tags=dict(mv.tags),
        metrics=dict(run.data.metrics) if run else {},
    )


def version_of(uri: str, *, tracking_uri: str) -> str:
    """The version number ``uri`` names now (an alias resolved), without downloading it."""
    import mlflow

    name, number, alias = parse_uri(uri)
    if number:
        return number
    try:
        return str(_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"{uri} in {tracking_uri}: {exc.message}") from None


def move_alias(uri: str, version: str, *, tracking_uri: str) -> str | None:
    """Point the alias of ``uri`` (``models:/name@alias``) at ``version``; the version it named
    before (None if it was unset)."""
    import mlflow

    name, _, alias = parse_uri(uri)
    if alias is None:
        raise RegistryError(
            f"{uri}: promotion moves an alias; name the model as models:/name@alias"
        )
    client = _client(tracking_uri)
    try:
        try:
            before: str | None = str(client.get_model_version_by_alias(name, alias).version)
        except mlflow.exceptions.MlflowException:
            before = None
        client.set_registered_model_alias(name, alias, version)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"{uri} in {tracking_uri}: {exc.message}") from None
    return before


def fetch_profile(uri: str, *, tracking_uri: str, dest: Path) -> Path:
    """Download the reference profile registered with the version ``uri`` names to ``dest``."""
    import mlflow

    name, number, alias = parse_uri(uri)
    client = _client(tracking_uri)
    try:
        mv = (
            client.get_model_version(name, number)
            if number
            else client.get_model_version_by_alias(name, alias)
        )
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=mv.run_id,
                    artifact_path=PROFILE_PATH,
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                )
            )
            found = sorted(local.glob("*.json"))
            if not found:
                raise RegistryError(f"{uri}: registered without a reference profile")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found[0], dest)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(
            f"{uri} in {tracking_uri}: no reference profile ({exc.message})"
        ) from None
    return dest
