"""The batch job config: what to read, which pipeline scores it, where predictions go.

Written as YAML (``tritonpipe batch job.yaml``) or built in Python; validated by pydantic so that
an error names the file and the field.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tritonpipe.errors import SpecError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """Input rows: Parquet files, folders or globs, CSV files, or a Feast retrieval.

    A Feast source is either entity rows (``path``: keys and ``event_timestamp`` per row, each
    joined point-in-time) or, with ``as_of`` instead of ``path``, the latest values of every
    entity of the feature service as of that time (what materializing up to it would store).
    """

    type: Literal["parquet", "csv", "feast"] = Field(description="Where rows come from.")
    path: str | None = Field(
        None,
        description="A file, a folder (every file in it) or a glob; for feast, the entity rows "
        "(Parquet or CSV with the entity keys and event_timestamp).",
    )
    repo: str | None = Field(None, description="feast: the feature repository folder.")
    feature_service: str | None = Field(
        None, description="feast: the service whose features are joined point-in-time."
    )
    as_of: datetime | None = Field(
        None,
        description="feast without path: every entity's latest feature values as of this time "
        "(ISO 8601; UTC when no offset is given), within each feature view's ttl.",
    )
    rows_per_unit: int = Field(
        50_000, gt=0, description="Rows per unit of work (committed atomically, resumable)."
    )

    @model_validator(mode="after")
    def _needs(self) -> SourceConfig:
        if self.type != "feast":
            if self.path is None:
                raise ValueError(f"source type {self.type} needs path (a file, folder or glob)")
            if self.as_of is not None or self.repo or self.feature_service:
                raise ValueError("repo, feature_service and as_of are for source type feast")
            return self
        if not self.repo or not self.feature_service:
            raise ValueError("source type feast needs repo and feature_service")
        if (self.path is None) == (self.as_of is None):
            raise ValueError(
                "source type feast needs path (entity rows) or as_of (latest values of all "
                "entities), not both"
            )
        return self


class OutputConfig(_Strict):
    """Where predictions go; ``type`` picks the sink."""

    type: Literal["parquet", "sqlite", "postgresql"] = Field(description="Output store.")
    path: str | None = Field(None, description="Folder (parquet) or database file (sqlite).")
    url: str | None = Field(None, description="postgresql://user@host:port/db (postgresql).")
    table: str = Field("predictions", description="Table name (sqlite, postgresql).")
    partition_by: list[str] = Field(
        default_factory=list, description="Key columns to partition Parquet output by (col=val/)."
    )


class BadRowsConfig(_Strict):
    """What to do with rows the pipeline cannot score (a null, a wrong type)."""

    policy: Literal["fail", "reject"] = Field(
        "fail", description="fail: stop naming file, row and column; reject: write to rejects."
    )
    rejects: str | None = Field(None, description="Folder for rejected rows (policy reject).")


class JobConfig(_Strict):
    """One batch-inference job."""

    pipeline: str = Field(description="Pipeline spec (YAML) or built model repository.")
    model: str | None = Field(None, description="Ensemble, stage or model to run.")
    model_version: str = Field("1", description="Version written next to each prediction.")
    source: SourceConfig
    output: OutputConfig
    key: list[str] = Field(
        default_factory=list,
        description="Input columns copied to the output (row identity). The first is the "
        "row's id: a row whose id is null or empty is rejected (`id 'x': missing`); the "
        "others are copied as they are, nulls included.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Pipeline input -> source column, where names differ."
    )
    outputs: list[str] | None = Field(None, description="Pipeline outputs to keep (all if unset).")
    transform: str | None = Field(
        None,
        description="feast sources: 'file.py:function'(stored, request) -> dict of input arrays, "
        "the feature lookup's transform run on the offline store's point-in-time features "
        "(stored: the service's features; request: the other columns).",
    )
    batch_size: int = Field(1024, gt=0, description="Rows per pipeline call or request.")
    threads: int | None = Field(
        1,
        gt=0,
        description="In-process engine: onnxruntime/torch intra-op threads (1, as each Triton "
        "instance runs; null: the runtime's default, one per core).",
    )
    bad_rows: BadRowsConfig = Field(default_factory=BadRowsConfig)
    log: dict[str, Any] | None = Field(
        None, description="Prediction-log sink ({type: parquet|redis, ...}); off when unset."
    )

    missing_features: Literal["bad", "defaults"] = Field(
        "bad",
        description="feast sources with a transform: a row whose entity has no feature value as "
        "of its time is a bad row (bad_rows policy), or gets zeros like the online lookup's "
        "defaults policy (then column entity_found is false; list it in key to keep it).",
    )

    @model_validator(mode="after")
    def _transform_needs_feast(self) -> JobConfig:
        if self.transform is not None:
            if self.source.type != "feast":
                raise ValueError("transform runs on a feast source's features: source.type feast")
            if ":" not in self.transform or not self.transform.split(":")[0].endswith(".py"):
                raise ValueError(f"transform {self.transform!r}: expected 'file.py:function'")
        return self

    def column_for(self, name: str) -> str:
        return self.columns.get(name, name)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> JobConfig:
    """Read and validate a job config; relative paths are relative to the file."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{file}: cannot read job config: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{file}: a job config is a mapping (pipeline, source, output, ...)")
    raw.update(overrides or {})
    config = parse_config(raw, where=str(file))
    return resolve_paths(config, file.parent)


def parse_config(raw: dict[str, Any], *, where: str = "job config") -> JobConfig:
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{where}: {'.'.join(str(p) for p in e['loc'])}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise SpecError("\n".join(problems)) from None


def resolve_paths(config: JobConfig, base: Path) -> JobConfig:
    def rel(p: str | None) -> str | None:
        return p if p is None or Path(p).is_absolute() else str(base / p)

    source = config.source.model_copy(
        update={"path": rel(config.source.path), "repo": rel(config.source.repo)}
    )
    output = config.output.model_copy(update={"path": rel(config.output.path)})
    bad = config.bad_rows.model_copy(update={"rejects": rel(config.bad_rows.rejects)})
    update: dict[str, Any] = {"source": source, "output": output, "bad_rows": bad}
    update["pipeline"] = rel(config.pipeline) or config.pipeline
    if config.transform is not None:
        file, _, func = config.transform.rpartition(":")
        update["transform"] = f"{rel(file)}:{func}"
    return config.model_copy(update=update)
