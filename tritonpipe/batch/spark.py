"""The same job on PySpark: ``pyspark.ml.functions.predict_batch_udf`` around the pipeline.

The job's units are spread over the executors, which read and check them with the single-process
engine's own code (:func:`tritonpipe.batch.job.prepare`: reader, Feast retrieval, transform, bad
rows), so a bad row fails the job naming file, row and column, or goes to the same rejects file
with the same reason. Good rows are scored by ``predict_batch_udf``: each Python worker loads the
pipeline once (or, with ``url``, calls a Triton server) and scores Arrow batches of
``batch_size`` rows; a batch the pipeline refuses is rerun row by row and only the refused rows
are set aside. Scored rows land in a staging folder partitioned by unit; the driver then commits
unit by unit through the same Parquet store and ledger as the single-process engine (write then
rename), so a rerun after a kill skips finished units and no row is lost or repeated.
``master`` is ``local[*]`` here, or a cluster URL (``spark://host:7077``, ``yarn``, ``k8s://...``)
whose executors can read the pipeline, the source and the output folder (a shared file system).
"""

from __future__ import annotations

import inspect
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.batch.config import JobConfig
from tritonpipe.batch.progress import Summary
from tritonpipe.errors import BatchError
from tritonpipe.records import Contract, OutputRule
from tritonpipe.records.outputs import column_values
from tritonpipe.tensors import Array, TensorSpec, dtype

ERROR = "_error"  # the pipeline's reason for refusing a row; empty when scored
UNIT, FILE, ROW = "_unit", "_file", "_row"
IN = "_in_"  # prefix of the prepared input columns (an input may share a key column's name)
STAGING = "_spark"  # under the output folder; readers skip names starting with _

_SPARK_TYPES = {
    "FP32": "float",
    "FP64": "double",
    "INT64": "bigint",
    "INT32": "int",
    "INT16": "smallint",
    "INT8": "tinyint",
    "BOOL": "tinyint",  # predict_batch_udf has no boolean results: cast back after
    "BYTES": "binary",
}


def _ddl(spec: TensorSpec) -> str:
    base = _SPARK_TYPES.get(spec.dtype)
    if base is None:
        raise BatchError(f"tensor {spec.name}: {spec.dtype} has no Spark type")
    return base if spec.shape == (1,) else f"array<{base}>"


def _result(column: Any, rule: OutputRule) -> Any:
    """An output column as stored: booleans cast back from tinyint, binary unhexed (the UDF's
    results have no boolean or binary type), text as it is (StringType)."""
    from pyspark.sql import functions as F

    if rule.kind == "binary":
        return F.unhex(column) if rule.scalar else F.transform(column, F.unhex)
    if rule.spec.dtype != "BOOL":
        return column
    return column.cast("boolean" if rule.scalar else "array<boolean>")


def _out_ddl(rule: OutputRule) -> str:
    """The UDF's result type for an output: text and (hex) binary as string, BOOL as tinyint."""
    if rule.spec.dtype == "BYTES":
        return "string" if rule.scalar else "array<string>"
    return _ddl(rule.spec)


def _struct(outputs: list[OutputRule]) -> Any:
    """predict_batch_udf takes a StructType object (not DDL text) for several outputs; the
    last field carries the reason a row was refused."""
    from pyspark.sql.types import StringType, StructField, StructType, _parse_datatype_string

    fields = [StructField(o.name, _parse_datatype_string(_out_ddl(o)), True) for o in outputs]
    return StructType([*fields, StructField(ERROR, StringType(), True)])


def _udf_column(rule: OutputRule, scored: Array, ok: Array, errors: Array) -> Array:
    """One output for every row of a UDF batch, as its result type; refused rows hold zeros or
    empty strings, and a row whose text is not UTF-8 gets its reason in ``errors``."""
    rows = len(ok)
    width = int(np.prod(rule.spec.shape))
    shape: tuple[int, ...] = (rows,) if rule.scalar else (rows, width)
    if rule.spec.dtype != "BYTES":
        full = np.zeros(shape, dtype=dtype(rule.spec.dtype).numpy)
        if ok.any():
            full[ok] = scored.reshape(int(ok.sum()), *shape[1:])
        return full.astype(np.int8) if full.dtype == np.bool_ else full
    full = np.full(shape, "", dtype=object)
    if ok.any():
        failures: dict[int, str] = {}
        values = column_values(rule, scored, failures)
        if rule.kind == "binary":
            values = np.vectorize(bytes.hex, otypes=[object])(values)
        positions = np.flatnonzero(ok)
        for i, reason in failures.items():
            errors[positions[i]] = reason
            values[i] = "" if rule.scalar else [""] * width
        full[ok] = values.reshape(len(positions), *shape[1:])
    return full


def make_predict_fn(
    pipeline: str,
    model: str | None,
    url: str | None,
    inputs: list[TensorSpec],
    outputs: list[OutputRule],
    batch_size: int,
) -> Callable[[], Callable[..., dict[str, Array]]]:
    """A picklable factory: each Spark Python worker calls it once and keeps the result."""

    def make() -> Callable[..., dict[str, Array]]:
        from tritonpipe.batch.engines import Engine, InProcessEngine, TritonEngine
        from tritonpipe.batch.job import _score

        engine: Engine = (
            TritonEngine(url, model or "", batch_size=batch_size)
            if url
            else InProcessEngine(pipeline, model, batch_size=batch_size, threads=1)
        )

        def predict(*columns: Array) -> dict[str, Array]:
            arrays = {}
            for spec, column in zip(inputs, columns, strict=True):
                array = np.asarray(column).astype(dtype(spec.dtype).numpy)
                arrays[spec.name] = array.reshape(len(array), -1)
            rows = len(next(iter(arrays.values())))
            # The in-process engine's own isolation: a refused batch is rerun in chunks, then
            # row by row; refused rows get zeros here and their reason in _error.
            scored, refused = _score(engine, arrays, "reject", batch_size)
            ok = np.ones(rows, dtype=bool)
            errors = np.full(rows, "", dtype=object)
            for bad in refused:
                ok[bad.position] = False
                errors[bad.position] = bad.reason
            out: dict[str, Array] = {}
            for rule in outputs:
                out[rule.name] = _udf_column(rule, scored.get(rule.name, np.zeros(0)), ok, errors)
            out[ERROR] = errors
            return out

        # predict_batch_udf counts the function's parameters to pass one array per column.
        params = [inspect.Parameter(s.name, inspect.Parameter.POSITIONAL_ONLY) for s in inputs]
        predict.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return predict

    return make


def session(master: str = "local[*]", app: str = "tritonpipe-batch") -> Any:
    """A Spark session (reused if one is active); workers run this interpreter unless
    PYSPARK_PYTHON names another (on a cluster: one with tritonpipe installed)."""
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    return (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


def _prepare_fn(
    config: JobConfig, contract: Contract, keys: list[str]
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """mapInPandas: unit descriptions in, their good rows out (unit, file, row, keys, inputs);
    bad rows fail the task or are written to the unit's rejects file, as in-process."""

    def prepare_units(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        from tritonpipe.batch.job import prepare, write_rejects
        from tritonpipe.batch.sources import ROW as SOURCE_ROW
        from tritonpipe.batch.sources import Unit

        for units in batches:
            for file, start, stop in units.itertuples(index=False):
                unit = Unit(file=file, start=int(start), stop=int(stop))
                frame, arrays, bad = prepare(config, contract, unit)
                # Always rewritten: a killed run's file for this unit is never merged twice.
                write_rejects(config, unit, [(frame, b) for b in bad])
                keep = np.ones(len(frame), dtype=bool)
                keep[[b.position for b in bad]] = False
                columns: dict[str, Any] = {
                    UNIT: unit.id,
                    FILE: unit.file,
                    ROW: frame[SOURCE_ROW].to_numpy()[keep],
                }
                columns.update({k: frame[k].to_numpy()[keep] for k in keys})
                for spec in (r.spec for r in contract.inputs):
                    array = arrays[spec.name][keep]
                    if array.dtype == np.bool_:
                        array = array.astype(np.int8)
                    columns[IN + spec.name] = (
                        array[:, 0]
                        if spec.shape == (1,)
                        else pd.Series(list(array), dtype=object)  # also when no row is left
                    )
                yield pd.DataFrame(columns)

    return prepare_units


def _schema(spark: Any, config: JobConfig, contract: Contract, first: Any) -> Any:
    """The prepared rows' schema: unit, file and row, the key columns as Spark reads them from
    the first unit's first row (after the transform, which may add some), then one column per
    input."""
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    from tritonpipe.batch.job import prepare
    from tritonpipe.batch.sources import Unit

    one_row = Unit(file=first.file, start=first.start, stop=min(first.start + 1, first.stop))
    inputs = [r.spec for r in contract.inputs]
    sample = prepare(config, contract, one_row)[0].head(1)[config.key]  # the executors read it all
    key_fields = list(spark.createDataFrame(sample).schema.fields) if config.key else []
    fields = [
        StructField(UNIT, _parse_datatype_string("string")),
        StructField(FILE, _parse_datatype_string("string")),
        StructField(ROW, _parse_datatype_string("bigint")),
        *key_fields,
        *[StructField(IN + s.name, _parse_datatype_string(_ddl(s))) for s in inputs],
    ]
    return StructType(fields)


def _task_error(exc: Exception) -> BatchError | None:
    """The BatchError an executor raised (a bad row under policy fail), out of Spark's wrapper."""
    import re

    found = re.search(r"tritonpipe\.errors\.BatchError: (.+)", str(exc))
    return BatchError(found.group(1).strip()) if found else None


def run_spark(
    config: JobConfig, *, spark: Any = None, master: str = "local[*]", url: str | None = None
) -> Summary:
    """Score the job's units not yet committed on Spark; commit them to ``output.path``."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F

    from tritonpipe.batch.engines import InProcessEngine
    from tritonpipe.batch.outputs import ParquetStore
    from tritonpipe.batch.rows import job_contract
    from tritonpipe.batch.sources import list_units

    if config.output.type != "parquet" or not config.output.path:
        raise BatchError("--engine spark writes Parquet: set output.type parquet and output.path")
    probe = InProcessEngine(config.pipeline, config.model, batch_size=1)  # specs, checked early
    contract = job_contract(config, probe.contract)
    inputs, name = list(probe.inputs), probe.name
    probe.close()
    outputs = [o for o in contract.outputs if config.outputs is None or o.name in config.outputs]
    for spec in inputs:
        if len(spec.shape) != 1:
            raise BatchError(f"input {spec.name}: batch jobs take 1-D inputs")
    store = ParquetStore(config.output)
    store.declare(outputs)
    start = time.perf_counter()
    units = list_units(config.source)
    done = store.done()
    todo = [u for u in units if u.id not in done]
    run_id = uuid.uuid4().hex[:12]
    summary = Summary(
        run_id=run_id,
        engine="spark",
        units=len(units),
        skipped=len(units) - len(todo),
        committed=0,
        rows=0,
        rejected=0,
        seconds=0.0,
    )
    if todo:
        spark = spark or session(master)
        staging = store.root / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # a killed run's uncommitted rows
        described = spark.createDataFrame(
            [(u.file, u.start, u.stop) for u in todo], "file string, start long, stop long"
        ).repartition(min(len(todo), spark.sparkContext.defaultParallelism * 4))
        prepared = described.mapInPandas(
            _prepare_fn(config, contract, config.key), _schema(spark, config, contract, todo[0])
        )
        udf = predict_batch_udf(
            make_predict_fn(config.pipeline, config.model, url, inputs, outputs, config.batch_size),
            return_type=_struct(outputs),
            batch_size=config.batch_size,
            input_tensor_shapes=[None if s.shape == (1,) else list(s.shape) for s in inputs],
        )
        scored = prepared.withColumn("_pred", udf(*[IN + s.name for s in inputs])).select(
            UNIT,
            FILE,
            ROW,
            *config.key,
            *[_result(F.col(f"_pred.{o.name}"), o).alias(o.name) for o in outputs],
            F.col(f"_pred.{ERROR}").alias(ERROR),
        )
        try:
            scored.write.partitionBy(UNIT).parquet(str(staging / run_id))
        except Exception as exc:  # py4j wraps the executor's error: surface a bad row's message
            error = _task_error(exc)
            if error is None:
                raise
            raise error from None
        for unit in todo:
            rows, rejected = _commit(config, store, unit, staging / run_id, name, run_id)
            summary.committed += 1
            summary.rows += rows
            summary.rejected += rejected
        shutil.rmtree(staging, ignore_errors=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _commit(
    config: JobConfig, store: Any, unit: Any, staged: Path, model: str, run_id: str
) -> tuple[int, int]:
    """One unit's staged rows into the store (same files and ledger as the single-process
    engine); rows the pipeline refused fail the job or join the unit's rejects."""
    import pandas as pd

    from tritonpipe.batch.job import _fail, write_rejects
    from tritonpipe.batch.rows import BadRow

    folder = staged / f"{UNIT}={unit.id}"
    frame = (
        pd.read_parquet(folder).sort_values(ROW).reset_index(drop=True)
        if folder.exists()
        else pd.DataFrame({ROW: pd.Series(dtype="int64"), ERROR: pd.Series(dtype=object)})
    )
    refused = frame[ERROR].fillna("") != ""
    bad = [
        BadRow(position=int(i), column="", reason=str(frame[ERROR].iloc[i]))
        for i in np.flatnonzero(refused.to_numpy())
    ]
    policy = config.bad_rows.policy
    if bad and policy == "fail":
        raise _fail(unit, frame.rename(columns={ROW: "_row"}), bad[0])
    rejected = 0
    rejects = Path(config.bad_rows.rejects or ".") / f"rejects-{unit.id}.parquet"
    earlier = pd.read_parquet(rejects) if config.bad_rows.rejects and rejects.exists() else None
    rejected += 0 if earlier is None else len(earlier)
    if bad:  # the pipeline's rejects join the converter's (written by the executor this run)
        rows = frame.drop(columns=[FILE, ERROR]).rename(columns={ROW: "_row"})
        write_rejects(config, unit, [(rows, b) for b in bad], earlier=earlier)
        rejected += len(bad)
    good = frame[~refused.to_numpy()].reset_index(drop=True)
    out = good.drop(columns=[FILE, ROW, ERROR], errors="ignore")
    out["model_name"] = model
    out["model_version"] = config.model_version
    out["run_id"] = run_id
    store.commit(unit.id, out, run_id)
    return len(out), rejected
