"""Input split into units: fixed row ranges of one file (or of one Feast retrieval), read as
DataFrames.

A unit's id depends only on the file (or the feature service and ``as_of``) and the range, so a
rerun of the same job finds the same units and can skip those its output store already committed.
"""

from __future__ import annotations

import glob
import hashlib
import re
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
        stem = re.sub(r"[^A-Za-z0-9_.=-]", "_", Path(self.file).stem)
        return f"{stem}-{digest}-{self.start:012d}"

    @property
    def rows(self) -> int:
        return self.stop - self.start


def _suffix(source: SourceConfig) -> str:
    if source.type == "feast":
        return ".csv" if (source.path or "").endswith(".csv") else ".parquet"
    return ".parquet" if source.type == "parquet" else ".csv"


def _is_latest(source: SourceConfig) -> bool:
    """A Feast source without entity rows: every entity's latest values as of ``as_of``."""
    return source.type == "feast" and source.path is None


def _latest(source: SourceConfig) -> Any:
    from tritonpipe.batch.feast_source import latest_values

    assert source.repo and source.feature_service and source.as_of  # checked by SourceConfig
    return latest_values(source.repo, source.feature_service, source.as_of)


def _latest_name(source: SourceConfig) -> str:
    """The unit's 'file': the service and time, so another as_of never shares a unit id."""
    assert source.as_of is not None
    return f"feast-{source.feature_service}-as_of={source.as_of.isoformat()}"


def _files(source: SourceConfig) -> list[str]:
    suffix = _suffix(source)
    if source.path is None:
        raise BatchError(f"source type {source.type}: set source.path")
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
    if _is_latest(source):
        sized = [(_latest_name(source), len(_latest(source)))]
    else:
        sized = [(file, _count_rows(source, file)) for file in _files(source)]
    for file, total in sized:
        for start in range(0, total, source.rows_per_unit):
            units.append(
                Unit(file=file, start=start, stop=min(start + source.rows_per_unit, total))
            )
    return units


def read_unit(source: SourceConfig, unit: Unit) -> Any:
    """The unit's rows as a pandas DataFrame, with their in-file index in column ``_row``."""
    return read_unit_arrow(source, unit)[0]


def read_unit_arrow(source: SourceConfig, unit: Unit) -> tuple[Any, Any]:
    """The unit's rows as a pandas DataFrame (see :func:`read_unit`) and, read from Parquet,
    the same rows as an Arrow table (which keeps a null apart from NaN); else None."""
    import pandas as pd

    table = None
    if _is_latest(source):
        frame = _latest(source).iloc[unit.start : unit.stop].copy()
        frame[ROW] = range(unit.start, unit.start + len(frame))
        return frame.reset_index(drop=True), None
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
            table = parquet.read_row_groups(groups).slice(unit.start - (first or 0), unit.rows)
            frame = table.to_pandas()
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
        from tritonpipe.batch.feast_source import join_entities

        assert source.repo and source.feature_service  # checked by SourceConfig
        frame = join_entities(source.repo, source.feature_service, frame, unit.file)
        table = None  # rows joined and reordered: the frame alone holds them
    return frame.reset_index(drop=True), table
