"""The same job on PySpark: ``pyspark.ml.functions.predict_batch_udf`` around the pipeline.

Each Python worker loads the pipeline once (predict_batch_udf caches what ``make_predict_fn``
returns per worker) and scores Arrow batches of ``batch_size`` rows; with ``url`` set the workers
call a Triton server instead. ``master`` is ``local[*]`` here, or a cluster URL
(``spark://host:7077``, ``yarn``, ``k8s://...``) whose executors can read the pipeline's path.
Output is written by Spark's own committer (Parquet, partitioned like the in-process engine's);
a rerun overwrites the output, which is Spark's unit of atomicity.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from tritonpipe.batch.config import JobConfig
from tritonpipe.batch.progress import Summary
from tritonpipe.errors import BatchError
from tritonpipe.tensors import Array, TensorSpec, dtype

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
        raise BatchError(f"output {spec.name}: {spec.dtype} has no Spark type")
    return base if spec.shape == (1,) else f"array<{base}>"


def _result(column: Any, spec: TensorSpec) -> Any:
    if spec.dtype != "BOOL":
        return column
    return column.cast("boolean" if spec.shape == (1,) else "array<boolean>")


def _struct(outputs: list[TensorSpec]) -> Any:
    """predict_batch_udf takes a StructType object (not DDL text) for several outputs."""
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    return StructType([StructField(o.name, _parse_datatype_string(_ddl(o)), True) for o in outputs])


def make_predict_fn(
    pipeline: str, model: str | None, url: str | None, inputs: list[TensorSpec], batch_size: int
) -> Callable[[], Callable[..., dict[str, Array]]]:
    """A picklable factory: each Spark Python worker calls it once and keeps the result."""

    def make() -> Callable[..., dict[str, Array]]:
        from tritonpipe.batch.engines import Engine, InProcessEngine, TritonEngine

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
            out = engine.predict(arrays)
            out = {k: v.astype(np.int8) if v.dtype == np.bool_ else v for k, v in out.items()}
            return {k: (v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v) for k, v in out.items()}

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
        .getOrCreate()
    )


def run_spark(
    config: JobConfig, *, spark: Any = None, master: str = "local[*]", url: str | None = None
) -> Summary:
    """Score the job's source on Spark and write Parquet to ``output.path``."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F

    from tritonpipe.batch.engines import InProcessEngine

    if config.source.type == "feast":
        raise BatchError("--engine spark reads Parquet or CSV: retrieve Feast features first")
    if config.output.type != "parquet" or not config.output.path:
        raise BatchError("--engine spark writes Parquet: set output.type parquet and output.path")
    probe = InProcessEngine(config.pipeline, config.model, batch_size=1)  # specs, checked early
    inputs, outputs, name = list(probe.inputs), list(probe.outputs), probe.name
    if config.outputs is not None:
        outputs = [o for o in outputs if o.name in config.outputs]
    spark = spark or session(master)
    start = time.perf_counter()
    reader = spark.read.option("header", "true").option("inferSchema", "true")
    frame = (
        reader.csv(config.source.path)
        if config.source.type == "csv"
        else spark.read.parquet(config.source.path)
    )
    columns = [config.column_for(s.name) for s in inputs]
    missing = [c for c in columns + config.key if c not in frame.columns]
    if missing:
        raise BatchError(
            f"{config.source.path}: no column {missing[0]!r}; columns: {', '.join(frame.columns)}"
        )
    nulls = frame.select([F.sum(F.col(c).isNull().cast("int")).alias(c) for c in columns]).first()
    bad = [c for c in columns if nulls[c]]
    if bad:
        raise BatchError(
            f"{config.source.path}: column '{bad[0]}' has {nulls[bad[0]]} null rows "
            "(the Spark engine takes policy fail only)"
        )
    shapes = [list(s.shape) for s in inputs]
    udf = predict_batch_udf(
        make_predict_fn(config.pipeline, config.model, url, inputs, config.batch_size),
        return_type=_struct(outputs),
        batch_size=config.batch_size,
        input_tensor_shapes=[None if s == [1] else s for s in shapes],
    )
    run_id = uuid.uuid4().hex[:12]
    scored = frame.withColumn("_pred", udf(*columns)).select(
        *config.key,
        *[_result(F.col(f"_pred.{o.name}"), o).alias(o.name) for o in outputs],
        F.lit(name).alias("model_name"),
        F.lit(config.model_version).alias("model_version"),
        F.lit(run_id).alias("run_id"),
    )
    writer = scored.write.mode("overwrite")
    if config.output.partition_by:
        writer = writer.partitionBy(*config.output.partition_by)
    writer.parquet(config.output.path)
    rows = spark.read.parquet(config.output.path).count()
    return Summary(
        run_id=run_id,
        engine="spark",
        units=1,
        skipped=0,
        committed=1,
        rows=rows,
        rejected=0,
        seconds=time.perf_counter() - start,
    )
