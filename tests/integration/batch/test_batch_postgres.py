"""PostgreSQL output against a real server started for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.integration.batch.conftest import job, make_rows
from tests.integration.batch.postgres import PostgresServer
from tritonpipe.batch import parse_config, run_job
from tritonpipe.errors import BatchError


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


def test_postgres_output_commits_units_once(
    scorer: Path, tmp_path: Path, postgres: PostgresServer
) -> None:
    import psycopg

    rows = make_rows(260)
    rows.to_parquet(tmp_path / "in.parquet")
    output = {"type": "postgresql", "url": postgres.url, "table": "fraud_scores"}
    config = parse_config(job(scorer, tmp_path / "in.parquet", output))
    assert run_job(config, progress=False).rows == 260
    assert run_job(config, progress=False).skipped == 3  # the ledger: nothing scored twice
    with psycopg.connect(postgres.url) as con:
        got = con.execute(
            "SELECT txn_id, score, parts, model_name FROM fraud_scores ORDER BY txn_id"
        ).fetchall()
    assert [r[0] for r in got] == list(range(260))
    history = np.stack(rows["history"].to_list())
    np.testing.assert_allclose(
        [r[1] for r in got], rows["amt"] * 2 + history.sum(axis=1), rtol=1e-5
    )
    assert {r[3] for r in got} == {"scorer"}
    assert pd.Series([r[2] for r in got]).str.startswith("[").all()  # vectors as JSON arrays


def test_postgres_unreachable_is_named(scorer: Path, tmp_path: Path) -> None:
    make_rows(5).to_parquet(tmp_path / "in.parquet")
    output = {"type": "postgresql", "url": "postgresql://nobody@127.0.0.1:1/none"}
    with pytest.raises(BatchError, match="postgresql://nobody@127.0.0.1:1/none: cannot connect"):
        run_job(parse_config(job(scorer, tmp_path / "in.parquet", output)), progress=False)
