"""Output stores behind one interface, chosen by ``output.type``; each keeps its own ledger.

A unit's predictions and its ledger entry are committed together: Parquet writes every file under
a temporary name, renames it, then renames the ledger marker into place (a rerun rewrites the
same file names, so a unit killed half-way leaves no duplicate); SQLite and PostgreSQL insert the
rows and the ledger row in one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.batch.config import OutputConfig
from tritonpipe.batch.faults import commit_started, fault_point
from tritonpipe.errors import BatchError
from tritonpipe.records import OutputRule
from tritonpipe.records.schema import arrow_type, sql_type

LEDGER = "_tritonpipe_units"


class OutputStore(ABC):
    """Where a job's predictions go, and which units are already there. ``declare`` names the
    pipeline's outputs before the first commit, so each is stored as the records contract's
    type for the sink (text BYTES as strings, binary ones as bytes)."""

    outputs: dict[str, OutputRule] = {}  # noqa: RUF012 - replaced whole by declare, never mutated

    def declare(self, outputs: Sequence[OutputRule]) -> None:
        self.outputs = {r.name: r for r in outputs}

    @abstractmethod
    def done(self) -> set[str]:
        """Ids of the units committed by earlier runs."""

    @abstractmethod
    def commit(self, unit: str, frame: Any, run_id: str) -> None:
        """Write the unit's rows and record the unit, atomically."""

    def close(self) -> None:  # noqa: B027 - stores without connections need nothing
        """Release connections."""


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


class ParquetStore(OutputStore):
    def __init__(self, config: OutputConfig) -> None:
        if not config.path:
            raise BatchError("output type parquet: set output.path (a folder)")
        self.root = Path(config.path)
        self.partition_by = config.partition_by
        (self.root / "_ledger").mkdir(parents=True, exist_ok=True)

    def done(self) -> set[str]:
        return {p.stem for p in (self.root / "_ledger").glob("*.json")}

    def _table(self, rows: Any) -> Any:
        """The rows as Arrow, each declared output as its contract type (``string`` for text
        even when a unit holds no rows)."""
        import pyarrow as pa

        table = pa.Table.from_pandas(rows, preserve_index=False)
        declared = self.outputs
        for i, name in enumerate(table.column_names):
            if name in declared:  # from the values, not pandas: a NaN output stays NaN
                values = rows[name]
                values = list(values) if values.dtype == object else values.to_numpy()
                column = pa.array(values, type=arrow_type(declared[name]), from_pandas=False)
                table = table.set_column(i, name, column)
        return table

    def commit(self, unit: str, frame: Any, run_id: str) -> None:
        import pyarrow.parquet as pq

        commit_started()
        # A unit with no row left writes no file (as a partitioned one does): an empty file
        # would hold only the columns it knows of, and readers take the first file's schema.
        groups = frame.groupby(self.partition_by, sort=True) if self.partition_by else [((), frame)]
        groups = groups if len(frame) else []
        files = []
        for values, part in groups:
            keys = values if isinstance(values, tuple) else (values,)
            folder = self.root.joinpath(
                *(f"{c}={v}" for c, v in zip(self.partition_by, keys, strict=True))
            )
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"part-{unit}.parquet"
            table = self._table(part.drop(columns=self.partition_by))
            _atomic_write(path, lambda tmp, table=table: pq.write_table(table, tmp))
            files.append(str(path.relative_to(self.root)))
            fault_point("file")
        fault_point("ledger")
        record = {"unit": unit, "run_id": run_id, "rows": len(frame), "files": files}
        _atomic_write(
            self.root / "_ledger" / f"{unit}.json", lambda t: t.write_text(json.dumps(record))
        )


def _sql_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return json.dumps(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _sql_type(series: Any) -> str:
    kind = series.dtype.kind
    return {"i": "BIGINT", "u": "BIGINT", "f": "DOUBLE PRECISION", "b": "BOOLEAN"}.get(kind, "TEXT")


class _SqlStore(OutputStore):
    placeholder = "?"

    def __init__(self, config: OutputConfig, connection: Any) -> None:
        self.table = config.table
        self.db = connection
        self._created = False
        with self._transaction():
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {LEDGER} (tbl TEXT, unit TEXT, run_id TEXT)"
            )

    def _transaction(self) -> Any:
        return self.db  # sqlite3: commits on success, rolls back on error

    def done(self) -> set[str]:
        cursor = self.db.execute(
            f"SELECT unit FROM {LEDGER} WHERE tbl = {self.placeholder}", (self.table,)
        )
        units = {str(row[0]) for row in cursor.fetchall()}
        self.db.commit()
        return units

    dialect = "sqlite"

    def _column_type(self, frame: Any, column: str) -> str:
        rule = self.outputs.get(column)
        if rule is None:
            return _sql_type(frame[column])
        if not rule.scalar:
            return "TEXT"  # vectors as JSON arrays
        return sql_type(rule, self.dialect)

    def _create(self, frame: Any) -> None:
        cols = ", ".join(f'"{c}" {self._column_type(frame, c)}' for c in frame.columns)
        self.db.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" ({cols})')
        self._created = True

    def commit(self, unit: str, frame: Any, run_id: str) -> None:
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        marks = ", ".join([self.placeholder] * len(frame.columns))
        rows = [tuple(_sql_value(v) for v in row) for row in frame.itertuples(index=False)]
        try:
            with self._transaction():  # one transaction: the rows and the ledger row, or neither
                cursor = self.db.cursor()
                if rows:  # an empty unit creates no table: its frame may lack the outputs
                    if not self._created:
                        self._create(frame)
                    cursor.executemany(
                        f'INSERT INTO "{self.table}" ({columns}) VALUES ({marks})', rows
                    )
                mark = self.placeholder
                cursor.execute(
                    f"INSERT INTO {LEDGER} VALUES ({mark}, {mark}, {mark})",
                    (self.table, unit, run_id),
                )
        except Exception as exc:
            raise BatchError(
                f"output table {self.table}: cannot commit unit {unit}: {exc}"
            ) from None

    def close(self) -> None:
        self.db.close()


class SqliteStore(_SqlStore):
    def __init__(self, config: OutputConfig) -> None:
        if not config.path:
            raise BatchError("output type sqlite: set output.path (a database file)")
        Path(config.path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(config, sqlite3.connect(config.path))


class PostgresStore(_SqlStore):
    placeholder = "%s"
    dialect = "postgresql"

    def __init__(self, config: OutputConfig) -> None:
        if not config.url:
            raise BatchError("output type postgresql: set output.url (postgresql://...)")
        import psycopg

        try:
            connection = psycopg.connect(config.url)
        except psycopg.Error as exc:
            raise BatchError(f"output {config.url}: cannot connect: {exc}") from None
        super().__init__(config, connection)

    def _transaction(self) -> Any:
        return self.db.transaction()  # psycopg: ``with connection`` would close it


def open_store(config: OutputConfig) -> OutputStore:
    """The store ``config.type`` names."""
    stores: dict[str, type[OutputStore]] = {
        "parquet": ParquetStore,
        "sqlite": SqliteStore,
        "postgresql": PostgresStore,
    }
    return stores[config.type](config)  # type: ignore[call-arg]
