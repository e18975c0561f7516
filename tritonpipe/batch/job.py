"""Run a batch job: units not yet committed are read, scored, and committed one at a time.

Every input row ends in exactly one place: the output (one prediction) or the rejects folder
(with its reason), under policy ``reject``; under policy ``fail`` the first bad row stops the job
with its file, row and column. A killed run leaves only whole units behind, so a rerun finishes
the job without losing or repeating a row.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.batch.config import JobConfig
from tritonpipe.batch.engines import Engine, InProcessEngine, is_bad_input
from tritonpipe.batch.outputs import _atomic_write, open_store
from tritonpipe.batch.progress import Progress, Summary
from tritonpipe.batch.rows import BadRow, job_contract, to_inputs
from tritonpipe.batch.sources import ROW, Unit, list_units, read_unit_arrow
from tritonpipe.errors import BatchError, TritonPipeError
from tritonpipe.records import Contract
from tritonpipe.tensors import Array


def output_frame(
    frame: Any,
    outputs: dict[str, Array],
    config: JobConfig,
    model: str,
    run_id: str,
    contract: Contract | None = None,
) -> Any:
    """Key columns, one column per output as record values (``str`` for text BYTES, ``bytes``
    for binary, numbers for [1], arrays otherwise), model and run."""
    import pandas as pd

    columns: dict[str, Any] = {k: frame[k].to_numpy() for k in config.key}
    values = output_values(outputs, contract)
    for name, array in values.items():
        if config.outputs is not None and name not in config.outputs:
            continue
        columns[name] = array if array.ndim == 1 else list(array.reshape(len(array), -1))
    out = pd.DataFrame(columns)
    out["model_name"] = model
    out["model_version"] = config.model_version
    out["run_id"] = run_id
    return out


def output_values(outputs: dict[str, Array], contract: Contract | None) -> dict[str, Array]:
    """Outputs as record-value columns (see :meth:`Contract.to_columns`); rows whose text is
    not UTF-8 must have been taken out first (:func:`unencodable`)."""
    if contract is None:
        return {
            k: (v.reshape(len(v)) if v.reshape(len(v), -1).shape[1] == 1 else v)
            for k, v in outputs.items()
        }
    rules = Contract([], [r for r in contract.outputs if r.name in outputs])
    return rules.to_columns(outputs)[0]


def unencodable(outputs: dict[str, Array], contract: Contract) -> list[BadRow]:
    """Rows whose outputs cannot be stored as record values (text that is not UTF-8)."""
    rules = Contract([], [r for r in contract.outputs if r.name in outputs and r.kind == "text"])
    failures = rules.to_columns(outputs)[1] if rules.outputs else []
    return [BadRow(position=f.row, column="", reason=f.reason) for f in failures]


def _first_per_row(bad: list[BadRow]) -> list[BadRow]:
    """One reason per row (its first), so a row bad in two columns is rejected once."""
    seen: set[int] = set()
    out = []
    for row in bad:
        if row.position not in seen:
            seen.add(row.position)
            out.append(row)
    return out


def _fail(unit: Unit, frame: Any, row: BadRow) -> BatchError:
    line = int(frame[ROW].iloc[row.position])
    where = f"column '{row.column}'" if row.column else "the pipeline"
    return BatchError(f"{unit.file}: row {line}: {where}: {row.reason}")


def _transform(config: JobConfig, frame: Any) -> tuple[dict[str, Array], list[BadRow]]:
    """The feature lookup's transform on a feast source's point-in-time features."""
    source = config.source
    if config.transform is None or not source.repo or not source.feature_service:
        return {}, []
    from tritonpipe.batch.feast_source import feature_names
    from tritonpipe.batch.transform import apply

    stored = feature_names(source.repo, source.feature_service)
    service, missing = source.feature_service, config.missing_features
    return apply(config.transform, frame, stored, service, missing)


Prepared = tuple[Any, dict[str, Array], list[BadRow]]  # a unit's frame, input arrays, bad rows


def prepare(config: JobConfig, contract: Contract, unit: Unit) -> Prepared:
    """A unit's rows, their input arrays (zeros where bad) and its bad rows, one per row;
    under policy fail the first bad row raises, naming file, row and column."""
    frame, table = read_unit_arrow(config.source, unit)
    given, bad = _transform(config, frame)
    arrays, wrong = to_inputs(frame, contract, config, unit.file, given, table)
    bad = _first_per_row(bad + wrong)
    if bad and config.bad_rows.policy == "fail":
        raise _fail(unit, frame, bad[0])
    return frame, arrays, bad


def write_rejects(
    config: JobConfig, unit: Unit, rejects: list[tuple[Any, BadRow]], earlier: Any = None
) -> None:
    """The unit's rejected rows, each with file, row, column and reason, in one file per unit
    (after ``earlier`` rows, when given); no rejects removes the unit's file."""
    import pandas as pd

    folder = config.bad_rows.rejects
    if folder is None:
        if not rejects:
            return
        raise BatchError("bad_rows.policy reject needs bad_rows.rejects (a folder)")
    path = Path(folder) / f"rejects-{unit.id}.parquet"
    if not rejects and earlier is None:
        path.unlink(missing_ok=True)
        return
    rows = []
    for frame, bad in rejects:
        record = frame.iloc[bad.position].to_dict()
        record = {k: (v if np.isscalar(v) or v is None else str(v)) for k, v in record.items()}
        rows.append({**record, "file": unit.file, "column": bad.column, "reason": bad.reason})
    table = pd.DataFrame(rows).rename(columns={ROW: "row"})
    if earlier is not None:
        table = pd.concat([earlier, table], ignore_index=True).sort_values("row")
    Path(folder).mkdir(parents=True, exist_ok=True)
    # Named by unit: a rerun of a killed unit rewrites the same file, never a second copy.
    _atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))


def _score(
    engine: Engine, arrays: dict[str, Array], policy: str, chunk: int
) -> tuple[dict[str, Array], list[BadRow]]:
    """Outputs for every row; a refused batch is split into chunks, and only a refused chunk is
    rerun row by row to find the rows at fault."""
    try:
        return engine.predict(arrays), []
    except TritonPipeError as exc:
        if not is_bad_input(exc):
            raise
    rows = len(next(iter(arrays.values())))
    parts: list[dict[str, Array]] = []
    bad: list[BadRow] = []
    for start in range(0, rows, chunk):
        part = {k: v[start : start + chunk] for k, v in arrays.items()}
        try:
            parts.append(engine.predict(part))
            continue
        except TritonPipeError as exc:
            if not is_bad_input(exc):
                raise
        for i, result in enumerate(engine.predict_rows(part)):
            if isinstance(result, TritonPipeError):
                bad.append(BadRow(position=start + i, column="", reason=str(result)))
                if policy == "fail":
                    return {}, bad
            else:
                parts.append(result)
    joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    return joined, bad


def log_records(out: Any) -> list[dict[str, Any]]:
    """A committed unit's rows as prediction-log records: text as ``str``, vectors as lists,
    binary outputs as base64 (as the Triton hook logs them)."""
    import base64

    columns: dict[str, list[Any]] = {}
    for name in out.columns:
        values = out[name].tolist()
        if values and isinstance(values[0], np.ndarray):
            values = [v.tolist() for v in values]
        elif values and isinstance(values[0], bytes):
            values = [base64.b64encode(v).decode() for v in values]
        columns[name] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


class BatchJob:
    """A job bound to an engine and an output store; ``run`` is resumable."""

    def __init__(self, config: JobConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine or InProcessEngine(
            config.pipeline, config.model, batch_size=config.batch_size, threads=config.threads
        )
        self.run_id = uuid.uuid4().hex[:12]
        self.contract = job_contract(config, self.engine.contract)

    def run(
        self, *, progress: bool = True, log: bool = False, engine_name: str = "in-process"
    ) -> Summary:
        config = self.config
        store = open_store(config.output)
        store.declare(self.contract.outputs)
        logger = self._logger() if log else None
        start = time.perf_counter()
        try:
            units = list_units(config.source)
            done = store.done()
            todo = [u for u in units if u.id not in done]
            bar = Progress(sum(u.rows for u in todo), enabled=progress)
            rows = rejected = 0
            for unit, prepared in self._prefetched(todo):
                out, refused = self._unit(unit, store, prepared)
                rows += len(out)
                rejected += refused
                bar.advance(unit.rows)
                if logger is not None:
                    logger.log(log_records(out))
            bar.finish()
        finally:
            store.close()
            if logger is not None:
                logger.close()
        return Summary(
            run_id=self.run_id,
            engine=engine_name,
            units=len(units),
            skipped=len(units) - len(todo),
            committed=len(todo),
            rows=rows,
            rejected=rejected,
            seconds=time.perf_counter() - start,
        )

    def _prefetched(self, todo: list[Unit]) -> Iterator[tuple[Unit, Prepared]]:
        """Units with their prepared rows; the next unit is read and converted on a second
        thread while this one is scored and committed, so the engine (a server's queue, above
        all) is not left idle between units. Units still commit one by one, in order."""
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-read") as reader:
            pending = reader.submit(prepare, self.config, self.contract, todo[0])
            for i, unit in enumerate(todo):
                prepared = pending.result()
                if i + 1 < len(todo):
                    pending = reader.submit(prepare, self.config, self.contract, todo[i + 1])
                yield unit, prepared

    def _unit(self, unit: Unit, store: Any, prepared: Prepared) -> tuple[Any, int]:
        """Score one unit and commit it; returns the committed frame and the rows rejected."""
        config = self.config
        frame, arrays, bad = prepared
        policy = config.bad_rows.policy
        keep = np.ones(len(frame), dtype=bool)
        keep[[b.position for b in bad]] = False
        good_frame = frame[keep].reset_index(drop=True)
        outputs, refused = _score(
            self.engine, {k: v[keep] for k, v in arrays.items()}, policy, config.batch_size
        )
        if refused and policy == "fail":
            raise _fail(unit, good_frame, refused[0])
        if refused:
            ok = np.ones(len(good_frame), dtype=bool)
            ok[[b.position for b in refused]] = False
            rejects = [(frame, b) for b in bad] + [(good_frame, b) for b in refused]
            good_frame = good_frame[ok].reset_index(drop=True)
        else:
            rejects = [(frame, b) for b in bad]
        failed = unencodable(outputs, self.contract) if len(good_frame) else []
        if failed and policy == "fail":
            raise _fail(unit, good_frame, failed[0])
        if failed:
            ok = np.ones(len(good_frame), dtype=bool)
            ok[[b.position for b in failed]] = False
            rejects += [(good_frame, b) for b in failed]
            good_frame = good_frame[ok].reset_index(drop=True)
            outputs = {k: v[ok] for k, v in outputs.items()}
        if rejects:
            write_rejects(config, unit, rejects)
        out = output_frame(
            good_frame, outputs, config, self.engine.name, self.run_id, self.contract
        )
        store.commit(unit.id, out, self.run_id)
        return out, len(rejects)

    def _logger(self) -> Any:
        from tritonpipe.predlog.logger import PredictionLogger
        from tritonpipe.predlog.sinks import make_sink

        if self.config.log is None:
            raise BatchError(
                "prediction logs asked for, but the job config has no log: {type: ...}"
            )
        return PredictionLogger(make_sink(self.config.log), to_records=lambda entry: entry)


def run_job(config: JobConfig, engine: Engine | None = None, **options: Any) -> Summary:
    """Run ``config`` with ``engine`` (in-process when None); see :meth:`BatchJob.run`."""
    job = BatchJob(config, engine)
    try:
        return job.run(**options)
    finally:
        job.engine.close()
