"""The Spark engine (local[*], predict_batch_udf) writes what the in-process engine writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.integration.batch.conftest import job, make_rows
from tritonpipe.batch import parse_config, run_job
from tritonpipe.errors import BatchError


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from tritonpipe.batch.spark import session

    spark = session("local[2]")
    yield spark
    spark.stop()


def test_spark_equals_in_process(scorer: Path, tmp_path: Path, spark: Any) -> None:
    from tritonpipe.batch.spark import run_spark

    make_rows(300).to_parquet(tmp_path / "in.parquet")

    def config(out: str) -> Any:
        return parse_config(
            job(
                scorer,
                tmp_path / "in.parquet",
                {"type": "parquet", "path": str(tmp_path / out), "partition_by": ["day"]},
            )
        )

    local = run_job(config("local"), progress=False)
    remote = run_spark(config("spark"), spark=spark)
    assert local.rows == remote.rows == 300
    a = pd.read_parquet(tmp_path / "local").sort_values("txn_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "spark").sort_values("txn_id").reset_index(drop=True)
    assert list(b["txn_id"]) == list(range(300))
    np.testing.assert_array_equal(a["score"], b["score"])
    np.testing.assert_array_equal(np.stack(a["parts"].to_list()), np.stack(b["parts"].to_list()))
    assert list(a["day"].astype(int)) == list(b["day"].astype(int))
    assert set(b["model_name"]) == {"scorer"}


def test_spark_names_null_column(scorer: Path, tmp_path: Path, spark: Any) -> None:
    from tritonpipe.batch.spark import run_spark

    rows = make_rows(20)
    rows.loc[3, "amt"] = np.nan
    rows.to_parquet(tmp_path / "in.parquet")
    config = parse_config(
        job(scorer, tmp_path / "in.parquet", {"type": "parquet", "path": str(tmp_path / "o")})
    )
    with pytest.raises(BatchError, match="column 'amt' has 1 null rows"):
        run_spark(config, spark=spark)
