"""Batch inference: files in, predictions to Parquet, SQLite or PostgreSQL out, resumable.

``run_job(load_config("job.yaml"))`` scores a job in-process; ``TritonEngine`` sends the same rows
to a running server, and :func:`tritonpipe.batch.spark.run_spark` runs them on PySpark. A job is
split into units committed atomically with a ledger entry, so a killed run resumes exactly.
"""

from tritonpipe.batch.config import JobConfig, load_config, parse_config
from tritonpipe.batch.engines import Engine, InProcessEngine, TritonEngine
from tritonpipe.batch.job import BatchJob, run_job
from tritonpipe.batch.outputs import OutputStore, open_store
from tritonpipe.batch.progress import Summary

__all__ = [
    "BatchJob",
    "Engine",
    "InProcessEngine",
    "JobConfig",
    "OutputStore",
    "Summary",
    "TritonEngine",
    "load_config",
    "open_store",
    "parse_config",
    "run_job",
]
