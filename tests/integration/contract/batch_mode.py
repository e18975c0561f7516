"""Batch as a mode of the cross-mode property test: the records written as Parquet, one file per
record (a file's column holds whatever the record holds: a number, a string, a list, a null),
scored by a batch job, then the output store and the rejects read back as verdicts.

A table has no absent cells, so a field the record leaves out is a null here (the in-process
reference sees the same records with ``None`` in its place). Every record is its own unit, so
batch composition equals the other modes' (one record per request) and outputs compare
bit-equal, with one stated exception: SQLite has no NaN (it stores NULL), so a NaN output read
back from SQLite is ``None``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.integration.contract.conftest import Signature
from tests.integration.contract.modes import Verdict
from tritonpipe.batch import parse_config
from tritonpipe.batch.config import JobConfig
from tritonpipe.records import Contract

N = "n"  # a second key column: the record's position in the example


def as_rows(signature: Signature, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as table rows: every field present, absent ones null."""
    names = ["id"] + [t["name"] for t in signature.inputs]
    return [{name: record.get(name) for name in names} for record in batch]


def write_records(signature: Signature, batch: list[dict[str, Any]], folder: Path) -> Path:
    """One Parquet file per record; the column types are what Arrow makes of the values."""
    folder.mkdir(parents=True)
    for n, row in enumerate(as_rows(signature, batch)):
        columns = {N: pa.array([n], pa.int64())}
        for name, value in row.items():
            columns[name] = pa.array([value])
        pq.write_table(pa.table(columns), folder / f"r{n:03d}.parquet")
    return folder


def job_config(
    spec: Path, signature: Signature, source: Path, output: dict[str, Any], rejects: Path
) -> JobConfig:
    return parse_config(
        {
            "pipeline": str(spec),
            "model": signature.name,
            "source": {"type": "parquet", "path": str(source / "*.parquet")},
            "output": output,
            "key": ["id", N],
            "batch_size": 8,
            "bad_rows": {"policy": "reject", "rejects": str(rejects)},
        }
    )


def _parquet_rows(folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*.parquet")):
        if not any(part.startswith("_") for part in path.relative_to(folder).parts):
            rows += pq.read_table(path).to_pylist()
    return rows


def _sql_rows(output: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows; none when no unit had a row to write (no table is created)."""
    query = f'SELECT * FROM "{output["table"]}"'
    if output["type"] == "sqlite":
        with sqlite3.connect(output["path"]) as db:
            found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
            if not db.execute(found, (output["table"],)).fetchall():
                return []
            cursor = db.execute(query)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    import psycopg

    with psycopg.connect(output["url"]) as db:
        found = db.execute("SELECT to_regclass(%s)", (f'"{output["table"]}"',)).fetchone()
        if found is None or found[0] is None:
            return []
        cursor = db.execute(query)
        names = [d.name for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _from_sql(contract: Contract, row: dict[str, Any]) -> dict[str, Any]:
    """A stored SQL row as record values: vectors are JSON arrays in TEXT, SQLite's booleans
    are 0/1, PostgreSQL's BYTEA reads as memoryview."""
    out: dict[str, Any] = {}
    for rule in contract.outputs:
        value = row[rule.name]
        if not rule.scalar and isinstance(value, str):
            value = json.loads(value)
        elif rule.spec.dtype == "BOOL" and isinstance(value, int):
            value = bool(value)
        elif isinstance(value, memoryview):
            value = bytes(value)
        elif value is None and rule.spec.dtype in ("FP32", "FP64"):
            value = float("nan")  # SQLite has no NaN: it stores NULL
        out[rule.name] = value
    return out


def read_verdicts(
    config: JobConfig, contract: Contract, count: int, output: dict[str, Any]
) -> list[Verdict]:
    """Each record's verdict: its output row, or its reject's reason; every record has one."""
    found: dict[int, Verdict] = {}
    if output["type"] == "parquet":
        stored = _parquet_rows(Path(output["path"]))
        values = [{r.name: row[r.name] for r in contract.outputs} for row in stored]
    else:
        stored = _sql_rows(output)
        values = [_from_sql(contract, row) for row in stored]
    for row, value in zip(stored, values, strict=True):
        assert row[N] not in found, f"record {row[N]} written twice"
        found[int(row[N])] = ("ok", value)
    rejects = Path(config.bad_rows.rejects or "")
    for row in _parquet_rows(rejects) if rejects.is_dir() else []:
        n = int(Path(row["file"]).stem[1:])
        assert n not in found, f"record {n} both written and rejected"
        found[n] = ("refused", row["reason"])
    assert sorted(found) == list(range(count)), f"records {sorted(found)} of {count}"
    return [found[n] for n in range(count)]
