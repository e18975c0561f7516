"""Input files split into units: fixed row ranges of one file, read as DataFrames.

A unit's id depends only on the file and the range, so a rerun of the same job finds the same
units and can skip those its output store already committed.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonpipe.batch.config import SourceConfig
from tritonpipe.errors import BatchError

ROW = "_row"  # each row's index in its file, for error messages and rejects


@dataclass(frozen=True, kw_only=True)
class Unit:
    """Rows [start, stop) of one input file."""

    file: str
    start: int
    stop: int

    @property
    def id(self) -> str:
        digest = hashlib.sha1(self.file.encode()).hexdigest()[:10]
        return f"{Path(self.file).stem}-{digest}-{self.start:012d}"

    @property
    def rows(self) -> int:
        return self.stop - self.start


def _suffix(source: SourceConfig) -> str:
    if source.type == "feast":
        return ".csv" if source.path.endswith(".csv") else ".parquet"
    return ".parquet" if source.type == "parquet" else ".csv"


def _files(source: SourceConfig) -> list[str]:
    suffix = _suffix(source)
    path = Path(source.path)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob(f"*{suffix}") if p.is_file())
    elif any(c in source.path for c in "*?["):
        found = sorted(glob.glob(source.path, recursive=True))
    elif path.is_file():
        found = [str(path)]
    else:
        raise BatchError(f"source {source.path}: no such file or folder")
    if not found:
        raise BatchError(f"source {source.path}: no {suffix} files")
    return found


def _count_rows(source: SourceConfig, file: str) -> int:
    try:
        if _suffix(source) == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(file).metadata.num_rows)
        with open(file, "rb") as handle:
            return max(sum(1 for _ in handle) - 1, 0)  # minus the header line
    except Exception as exc:  # a corrupt or unreadable file: name it
        raise BatchError(f"source file {file}: cannot read: {exc}") from None


def list_units(source: SourceConfig) -> list[Unit]:
    """Every unit of the source, in file then row order."""
    units: list[Unit] = []
    for file in _files(source):
        total = _count_rows(source, file)
        for start in range(0, total, source.rows_per_unit):
            units.append(
                Unit(file=file, start=start, stop=min(start + source.rows_per_unit, total))
            )
    return units


def read_unit(source: SourceConfig, unit: Unit) -> Any:
    """The unit's rows as a pandas DataFrame, with their in-file index in column ``_row``."""
    import pandas as pd

    try:
        if _suffix(source) == ".parquet":
            import pyarrow.parquet as pq

            # Only the row groups that overlap the unit, then the unit's slice of them.
            parquet = pq.ParquetFile(unit.file)
            groups, first, offset = [], None, 0
            for i in range(parquet.metadata.num_row_groups):
                size = parquet.metadata.row_group(i).num_rows
                if offset < unit.stop and offset + size > unit.start:
                    groups.append(i)
                    first = offset if first is None else first
                offset += size
            table = parquet.read_row_groups(groups)
            frame = table.slice(unit.start - (first or 0), unit.rows).to_pandas()
        else:
            frame = pd.read_csv(
                unit.file, skiprows=range(1, unit.start + 1), nrows=unit.rows, header=0
            )
    except Exception as exc:
        raise BatchError(
            f"source file {unit.file}: cannot read rows {unit.start}+: {exc}"
        ) from None
    frame[ROW] = range(unit.start, unit.start + len(frame))
    if source.type == "feast":
        frame = _retrieve(source, unit, frame)
    return frame.reset_index(drop=True)


def _retrieve(source: SourceConfig, unit: Unit, entities: Any) -> Any:
    """The entity rows joined point-in-time with the feature service's features (Feast's
    offline store), back in entity order."""
    if not source.repo or not source.feature_service:
        raise BatchError("source type feast: set source.repo and source.feature_service")
    if "event_timestamp" not in entities.columns:
        raise BatchError(f"{unit.file}: feast entity rows need an event_timestamp column")
    from feast import FeatureStore

    try:
        store = FeatureStore(repo_path=source.repo)
        service = store.get_feature_service(source.feature_service)
        joined = store.get_historical_features(entity_df=entities, features=service).to_df()
    except Exception as exc:  # Feast raises its own tree: name the repo and the service
        raise BatchError(
            f"feast {source.repo} service {source.feature_service}: retrieval failed: {exc}"
        ) from None
    return joined.sort_values(ROW).reset_index(drop=True)
