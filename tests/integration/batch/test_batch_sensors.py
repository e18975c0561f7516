"""A user's own pipeline (examples/sensors: raw float64 readings, a string category, a string
label) in-process and in batch: in-process, Triton and Spark engines; Parquet, SQLite and
PostgreSQL outputs. Text outputs are strings in every sink, and every engine writes the same."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.integration.batch.postgres import PostgresServer
from tritonpipe.batch import TritonEngine, parse_config, run_job
from tritonpipe.errors import PipelineError
from tritonpipe.pipeline import Pipeline
from tritonpipe.server import TritonServer

Readings = Callable[..., pd.DataFrame]
ROWS = 600


def _job(spec: Path, source: Path, output: dict[str, Any], **extra: Any) -> Any:
    return parse_config(
        {
            "pipeline": str(spec),
            "model": "sensors",
            "source": {"type": "parquet", "path": str(source), "rows_per_unit": 250},
            "output": output,
            "key": ["reading_id"],
            "batch_size": 64,
            **extra,
        }
    )


@pytest.fixture(scope="module")
def readings(sensor_readings: Readings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 generated readings with a few bad ones, as Parquet (the frame is beside it)."""
    frame = sensor_readings(ROWS, seed=7)
    frame.loc[3, "temperature"] = None  # null
    frame.loc[4, "sensor_type"] = "fan"  # unknown category
    frame.loc[5, "humidity"] = 140.0  # outside [0, 100]
    path = tmp_path_factory.mktemp("sensor_readings") / "readings.parquet"
    frame.to_parquet(path)
    return path


@pytest.fixture(scope="module")
def expected(sensors_spec: Path, readings: Path) -> pd.DataFrame:
    """The in-process Pipeline's outputs for the good rows, as the reference."""
    frame = pd.read_parquet(readings).drop(index=[3, 4, 5]).reset_index(drop=True)
    pipe = Pipeline.load(sensors_spec, threads=1)
    outputs = pipe(frame)  # a DataFrame of float64 readings and str categories
    values = pipe.contract.to_columns(outputs)[0]
    return pd.DataFrame(
        {"reading_id": frame["reading_id"], "alert": values["alert"], "score": values["score"]}
    )


def test_in_process_takes_dataframes_and_names_bad_values(
    sensors_spec: Path, readings: Path, expected: pd.DataFrame, sensor_readings: Readings
) -> None:
    pipe = Pipeline.load(sensors_spec, threads=1)
    with pytest.raises(PipelineError) as failed:
        pipe(pd.read_parquet(readings).head(8))
    assert failed.value.invalid
    assert [r.reason for r in failed.value.refusals] == [
        "input 'temperature': nan is not a finite number",  # pandas float64 holds null as NaN
        "input 'sensor_type': unknown category 'fan'",
        "input 'humidity': 140 is outside [0, 100]",
    ]
    assert set(expected["alert"]) == {"ok", "alert"}
    truth = sensor_readings(ROWS, seed=7).drop(index=[3, 4, 5])["truth"].to_numpy()
    assert (expected["alert"].to_numpy() == truth).mean() > 0.9  # the model learnt the rule
    good = sensor_readings(5).drop(columns=["truth"])
    records = pipe.run_records(good.to_dict("records"))
    by_columns = pipe(good.to_dict("list"))["alert"].ravel()  # a dict of columns
    assert [r["alert"] for r in records] == [v.decode() for v in by_columns]  # type: ignore[index]


def _check_parquet(folder: Path, expected: pd.DataFrame) -> None:
    schema = pq.read_table(folder).schema
    assert str(schema.field("alert").type) == "string"
    got = pd.read_parquet(folder).sort_values("reading_id").reset_index(drop=True)
    assert list(got["reading_id"]) == list(expected["reading_id"])
    assert (got["alert"] == "alert").sum() == (expected["alert"] == "alert").sum() > 0
    assert list(got["alert"]) == list(expected["alert"])
    np.testing.assert_array_equal(got["score"].to_numpy(), expected["score"].to_numpy())


def _check_rejects(folder: Path) -> None:
    rejects = pd.read_parquet(folder).sort_values("row")
    assert list(rejects["row"]) == [3, 4, 5]
    assert list(rejects["reason"]) == [
        "input 'temperature': null",  # read as Arrow: null stays null
        "input 'sensor_type': unknown category 'fan'",
        "input 'humidity': 140 is outside [0, 100]",
    ]


def test_batch_parquet_and_sqlite_store_text(
    sensors_spec: Path, readings: Path, expected: pd.DataFrame, tmp_path: Path
) -> None:
    reject = {"policy": "reject", "rejects": str(tmp_path / "rejects")}
    out = {"type": "parquet", "path": str(tmp_path / "out")}
    summary = run_job(_job(sensors_spec, readings, out, bad_rows=reject), progress=False)
    assert (summary.rows, summary.rejected) == (ROWS - 3, 3)
    _check_parquet(tmp_path / "out", expected)
    _check_rejects(tmp_path / "rejects")

    db = tmp_path / "out.db"
    lite = {"type": "sqlite", "path": str(db), "table": "alerts"}
    run_job(_job(sensors_spec, readings, lite, bad_rows=reject), progress=False)
    with sqlite3.connect(db) as con:
        count = con.execute("SELECT count(*) FROM alerts WHERE alert = 'alert'").fetchone()[0]
        kinds = {r[0] for r in con.execute("SELECT DISTINCT typeof(alert) FROM alerts")}
    assert count == (expected["alert"] == "alert").sum() > 0
    assert kinds == {"text"}


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


def test_batch_postgres_stores_text(
    sensors_spec: Path,
    readings: Path,
    expected: pd.DataFrame,
    postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    import psycopg

    output = {"type": "postgresql", "url": postgres.url, "table": "sensor_alerts"}
    reject = {"policy": "reject", "rejects": str(tmp_path / "rejects")}
    run_job(_job(sensors_spec, readings, output, bad_rows=reject), progress=False)
    with psycopg.connect(postgres.url) as con:
        count = con.execute("SELECT count(*) FROM sensor_alerts WHERE alert = 'alert'").fetchone()
        kind = con.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'sensor_alerts' AND column_name = 'alert'"
        ).fetchone()
    assert count is not None and count[0] == (expected["alert"] == "alert").sum() > 0
    assert kind == ("text",)


def test_triton_engine_writes_what_in_process_writes(
    sensors_spec: Path,
    readings: Path,
    expected: pd.DataFrame,
    sensors_server: TritonServer,
    tmp_path: Path,
) -> None:
    engine = TritonEngine(sensors_server.grpc_url, "sensors", batch_size=64, in_flight=4)
    reject = {"policy": "reject", "rejects": str(tmp_path / "rejects")}
    out = {"type": "parquet", "path": str(tmp_path / "out")}
    config = _job(sensors_spec, readings, out, bad_rows=reject)
    summary = run_job(config, engine, progress=False, engine_name="triton")
    assert (summary.rows, summary.rejected) == (ROWS - 3, 3)
    _check_parquet(tmp_path / "out", expected)
    _check_rejects(tmp_path / "rejects")  # the job's contract: the spec's ranges and categories


def test_spark_engine_scores_string_outputs(
    sensors_spec: Path, readings: Path, expected: pd.DataFrame, tmp_path: Path, spark: Any
) -> None:
    from tritonpipe.batch.spark import run_spark

    reject = {"policy": "reject", "rejects": str(tmp_path / "rejects")}
    out = {"type": "parquet", "path": str(tmp_path / "out")}
    summary = run_spark(_job(sensors_spec, readings, out, bad_rows=reject), spark=spark)
    assert (summary.rows, summary.rejected) == (ROWS - 3, 3)
    _check_parquet(tmp_path / "out", expected)
    _check_rejects(tmp_path / "rejects")
