"""Batch jobs in-process: Parquet and SQLite outputs, bad-row policies, resumption after kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.integration.batch.conftest import STAGES, job, make_rows
from tritonpipe.batch import parse_config, run_job
from tritonpipe.errors import BatchError, SpecError


def _expected(rows: pd.DataFrame) -> pd.Series:
    history = np.stack(rows["history"].to_list())
    return pd.Series(rows["amt"].to_numpy() * 2 + history.sum(axis=1), index=rows["txn_id"])


def test_parquet_output_partitioned_with_keys_model_and_run(scorer: Path, tmp_path: Path) -> None:
    rows = make_rows(250)
    rows.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    config = parse_config(
        job(
            scorer,
            tmp_path / "in.parquet",
            {"type": "parquet", "path": str(out), "partition_by": ["day"]},
        )
    )
    summary = run_job(config, progress=False)
    assert (summary.units, summary.committed, summary.rows) == (3, 3, 250)
    assert sorted(p.name for p in out.iterdir()) == ["_ledger", "day=0", "day=1", "day=2"]
    got = pd.read_parquet(out)
    assert sorted(got["txn_id"]) == list(range(250))
    assert set(got["model_name"]) == {"scorer"} and set(got["run_id"]) == {summary.run_id}
    got = got.set_index("txn_id").sort_index()
    np.testing.assert_allclose(got["score"], _expected(rows).sort_index(), rtol=1e-5)
    assert np.stack(got["parts"].to_list()).shape == (250, 3)
    again = run_job(config, progress=False)  # everything committed: nothing redone
    assert (again.skipped, again.committed, again.rows) == (3, 0, 0)
    assert len(pd.read_parquet(out)) == 250


def test_csv_source_and_column_errors(scorer: Path, tmp_path: Path) -> None:
    rows = make_rows(120)
    csv = rows.assign(history=[",".join(map(str, h)) for h in rows["history"]])
    csv.to_csv(tmp_path / "in.csv", index=False)
    spec = job(scorer, tmp_path / "in.csv", {"type": "parquet", "path": str(tmp_path / "out")})
    spec["source"]["type"] = "csv"
    assert run_job(parse_config(spec), progress=False).rows == 120
    got = pd.read_parquet(tmp_path / "out").set_index("txn_id").sort_index()
    np.testing.assert_allclose(got["score"], _expected(rows).sort_index(), rtol=1e-5)
    csv.loc[4, "history"] = "1,2"
    csv.to_csv(tmp_path / "in.csv", index=False)
    spec["output"]["path"] = str(tmp_path / "out2")
    with pytest.raises(
        BatchError,
        match=r"in.csv: row 4: column 'history': input 'history': 2 values, wants FP64\[3\]",
    ):
        run_job(parse_config(spec), progress=False)
    spec["columns"] = {"amount": "amt", "history": "hist"}
    with pytest.raises(BatchError, match="no column 'hist' for pipeline input history"):
        run_job(parse_config(spec), progress=False)


def test_sqlite_output(scorer: Path, tmp_path: Path) -> None:
    rows = make_rows(230)
    rows.to_parquet(tmp_path / "in.parquet")
    db = tmp_path / "out.db"
    config = parse_config(
        job(scorer, tmp_path / "in.parquet", {"type": "sqlite", "path": str(db), "table": "scores"})
    )
    assert run_job(config, progress=False).rows == 230
    assert run_job(config, progress=False).committed == 0
    with sqlite3.connect(db) as con:
        got = pd.read_sql("SELECT * FROM scores", con).set_index("txn_id").sort_index()
        assert con.execute("SELECT count(*) FROM _tritonpipe_units").fetchone() == (3,)
    assert list(got.index) == list(range(230))
    np.testing.assert_allclose(got["score"], _expected(rows).sort_index(), rtol=1e-5)


def test_bad_rows_fail_or_reject(scorer: Path, tmp_path: Path) -> None:
    rows = make_rows(150)
    rows.loc[7, "amt"] = np.nan  # null: caught before scoring
    rows.loc[120, "amt"] = -1.0  # refused by the pipeline (invalid input)
    rows.to_parquet(tmp_path / "in.parquet")
    out = {"type": "parquet", "path": str(tmp_path / "out")}
    with pytest.raises(BatchError, match=r"in.parquet: row 7: column 'amt': input 'amount': null"):
        run_job(parse_config(job(scorer, tmp_path / "in.parquet", out)), progress=False)
    reject = {"policy": "reject", "rejects": str(tmp_path / "rejects")}
    summary = run_job(
        parse_config(job(scorer, tmp_path / "in.parquet", out, bad_rows=reject)), progress=False
    )
    assert (summary.rows, summary.rejected) == (148, 2)
    rejects = pd.read_parquet(tmp_path / "rejects").set_index("row").sort_index()
    assert list(rejects.index) == [7, 120]
    assert rejects.loc[7, "column"] == "amt" and "null" in rejects.loc[7, "reason"]
    assert "amount must be >= 0" in rejects.loc[120, "reason"]
    scored = set(pd.read_parquet(tmp_path / "out")["txn_id"])
    assert scored | {7, 120} == set(range(150)) and not scored & {7, 120}


def test_rows_without_a_key_are_rejected_and_empty_units_write_nothing(
    scorer: Path, tmp_path: Path
) -> None:
    """A row with a null or empty key is rejected with the contract's ``id`` reason (it could
    not be written once); a unit left with no row writes no Parquet file and creates no table,
    so the units after it keep every output column."""
    rows = make_rows(6).astype({"txn_id": object})
    rows.loc[[0, 1, 2], "txn_id"] = [None, "", None]
    rows.loc[3:, "txn_id"] = ["a", "b", "c"]
    rows.to_parquet(tmp_path / "in.parquet")
    reject = {"policy": "reject", "rejects": str(tmp_path / "rejects")}
    for output in (
        {"type": "parquet", "path": str(tmp_path / "out")},
        {"type": "sqlite", "path": str(tmp_path / "out.db"), "table": "scores"},
    ):
        spec = job(scorer, tmp_path / "in.parquet", output, bad_rows=reject)
        spec["source"]["rows_per_unit"] = 3  # the first unit: no row left
        summary = run_job(parse_config(spec), progress=False)
        assert (summary.rows, summary.rejected) == (3, 3)
        rejects = pd.read_parquet(tmp_path / "rejects").sort_values("row")
        assert list(rejects["reason"]) == ["id 'txn_id': missing"] * 3
        assert set(rejects["column"]) == {"txn_id"}
    assert len(list((tmp_path / "out").glob("*.parquet"))) == 1
    got = pd.read_parquet(tmp_path / "out")
    assert sorted(got["txn_id"]) == ["a", "b", "c"] and {"score", "parts"} <= set(got.columns)
    with sqlite3.connect(tmp_path / "out.db") as con:
        assert con.execute("SELECT count(*), count(score) FROM scores").fetchone() == (3, 3)


def test_config_errors_name_the_field(scorer: Path, tmp_path: Path) -> None:
    spec = job(scorer, tmp_path, {"type": "parquet"})
    spec["output"]["type"] = "excel"
    with pytest.raises(SpecError, match="output.type"):
        parse_config(spec)
    spec["output"]["type"] = "parquet"
    spec["source"]["repo"] = "features"  # only for a feast source: the model's own check
    with pytest.raises(SpecError) as info:
        parse_config(spec)
    assert str(info.value) == (
        "job config: source: repo, feature_service and as_of are for source type feast"
    )


SLOW_STAGES = """
import time
import numpy as np

def score(amount, history):
    time.sleep(0.02)  # slow enough to be killed mid-run
    total = amount * 2 + history.sum(axis=1, keepdims=True)
    return {"score": total.astype(np.float32), "parts": history * 2}
"""
# The spec's other stages as the shared ones are; only ``score`` is slowed down.
SLOW_STAGES += "\n\ndef flag" + STAGES.split("def flag", 1)[1]


@pytest.mark.parametrize("kind", ["parquet", "sqlite"])
def test_resume_after_kill_9_loses_and_repeats_nothing(
    scorer: Path, tmp_path: Path, kind: str
) -> None:
    (tmp_path / "stages.py").write_text(SLOW_STAGES)
    (tmp_path / "pipeline.yaml").write_text(scorer.read_text())
    for part in range(3):
        make_rows(400, seed=part, start=part * 400).to_parquet(tmp_path / f"in-{part}.parquet")
    output = {"type": kind, "path": str(tmp_path / ("out" if kind == "parquet" else "out.db"))}
    spec = job(tmp_path / "pipeline.yaml", tmp_path, output)
    spec["source"]["path"] = str(tmp_path / "in-*.parquet")
    spec["source"]["rows_per_unit"] = 50
    config_file = tmp_path / "job.yaml"
    config_file.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "tritonpipe.cli", "batch", str(config_file), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ledger = tmp_path / "out" / "_ledger"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:  # wait for some committed units
        if kind == "parquet" and ledger.exists() and len(list(ledger.glob("*.json"))) >= 3:
            break
        if kind == "sqlite" and Path(output["path"]).exists() and _count(output["path"]) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "already done of 24" in finished.stdout
    if kind == "parquet":
        keys = pd.read_parquet(tmp_path / "out")["txn_id"]
    else:
        with sqlite3.connect(output["path"]) as con:
            keys = pd.read_sql("SELECT txn_id FROM predictions", con)["txn_id"]
    counts = keys.value_counts()
    assert set(counts.index) == set(range(1200)), "lost rows"
    assert counts.max() == 1, "duplicated rows"


def _count(path: str) -> int:
    try:
        with sqlite3.connect(path) as con:
            return int(con.execute("SELECT count(*) FROM _tritonpipe_units").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_public_api_and_light_cli() -> None:
    import tritonpipe.batch

    assert tritonpipe.batch.__all__ == [
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
    code = "import sys, tritonpipe.cli.main; print([m for m in ('pyspark', 'psycopg') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_progress_line_shows_rate_and_eta() -> None:
    import io

    from tritonpipe.batch.progress import Progress

    stream = io.StringIO()
    bar = Progress(1000, stream=stream, every_s=0.0)
    bar.advance(250)
    line = bar.line(elapsed=1.0)
    assert "250/1,000 rows" in line and "250 rows/s" in line and "ETA 0:00:03" in line
    assert "rows/s" in stream.getvalue()
