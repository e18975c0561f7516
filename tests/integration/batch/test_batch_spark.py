"""The Spark engine (local[*], predict_batch_udf) writes what the in-process engine writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.integration.batch.conftest import job, make_rows
from tritonpipe.batch import parse_config, run_job
from tritonpipe.batch.faults import VARIABLE
from tritonpipe.errors import BatchError


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


def test_spark_bad_rows_and_rerun_match_in_process(
    scorer: Path, tmp_path: Path, spark: Any
) -> None:
    """Same rejects (file, row, column, reason) as in-process; policy fail names the same row;
    a rerun after a partial run commits only the missing units: 0 lost, 0 duplicated."""
    from tritonpipe.batch.spark import run_spark

    for part in range(2):
        rows = make_rows(150, seed=part, start=part * 150)
        if part == 1:
            rows.loc[7, "amt"] = np.nan  # null: caught by the converter
            rows.loc[120, "amt"] = -1.0  # refused by the pipeline (invalid input)
        rows.to_parquet(tmp_path / f"in-{part}.parquet")

    def config(name: str, policy: str = "reject") -> Any:
        spec = job(scorer, tmp_path, {"type": "parquet", "path": str(tmp_path / name)})
        spec["source"].update(path=str(tmp_path / "in-*.parquet"), rows_per_unit=50)
        spec["bad_rows"] = {"policy": policy, "rejects": str(tmp_path / f"{name}-rejects")}
        return parse_config(spec)

    with pytest.raises(BatchError) as local_fail:
        run_job(config("lf", "fail"), progress=False)
    with pytest.raises(BatchError) as spark_fail:
        run_spark(config("sf", "fail"), spark=spark)
    assert str(spark_fail.value) == str(local_fail.value)
    assert "in-1.parquet: row 7: column 'amt': input 'amount': null" in str(spark_fail.value)

    local = run_job(config("local"), progress=False)
    remote = run_spark(config("spark"), spark=spark)
    assert (remote.rows, remote.rejected, remote.units) == (local.rows, local.rejected, 6)
    assert (remote.rows, remote.rejected) == (298, 2)
    fields = ["file", "row", "column", "reason"]
    a = pd.read_parquet(tmp_path / "local-rejects")[fields].sort_values("row")
    b = pd.read_parquet(tmp_path / "spark-rejects")[fields].sort_values("row")
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))

    # A partial run: two units' commits undone (ledger entry and file gone) plus a stale staging
    # folder, as a kill leaves them; the rerun commits those two units only.
    out = tmp_path / "spark"
    for ledger in sorted((out / "_ledger").glob("*.json"))[:2]:
        (out / f"part-{ledger.stem}.parquet").unlink()
        ledger.unlink()
    (out / "_spark" / "killed").mkdir(parents=True)
    rerun = run_spark(config("spark"), spark=spark)
    assert (rerun.skipped, rerun.committed) == (4, 2)
    counts = pd.read_parquet(out)["txn_id"].value_counts()
    assert set(counts.index) == set(range(300)) - {157, 270}, "lost rows"
    assert counts.max() == 1, "duplicated rows"


def test_spark_rerun_after_a_kill_inside_a_commit_reports_each_reject_once(
    scorer: Path, tmp_path: Path, spark: Any
) -> None:
    """Killed (SIGKILL, tritonpipe.batch.faults) inside the second unit's commit, after its
    rejects file took the pipeline's refusals and before its ledger marker: the rerun rejects
    each bad row exactly once, and its summary counts what the rejects files of the units it
    committed hold."""
    from tritonpipe.batch.spark import run_spark

    # (file, row, amt): NaN is refused by the converter (on the executors), -1 by the pipeline.
    bad = {(0, 3, np.nan), (0, 70, -1.0), (1, 20, np.nan), (1, 30, -1.0), (1, 80, -1.0)}
    for part in range(2):
        rows = make_rows(100, seed=part, start=part * 100)
        for file, row, value in bad:
            if file == part:
                rows.loc[row, "amt"] = value
        rows.to_parquet(tmp_path / f"in-{part}.parquet")
    rejects = tmp_path / "rejects"
    spec = job(scorer, tmp_path, {"type": "parquet", "path": str(tmp_path / "out")})
    spec["source"].update(path=str(tmp_path / "in-*.parquet"), rows_per_unit=50)  # 4 units
    spec["bad_rows"] = {"policy": "reject", "rejects": str(rejects)}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))

    env = {**os.environ, VARIABLE: "ledger:2:kill"}
    killed = subprocess.run(
        [sys.executable, "-m", "tritonpipe.cli", "batch", str(tmp_path / "job.yaml"),
         "--engine", "spark", "--master", "local[2]", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stdout + killed.stderr
    markers = sorted(p.stem for p in (tmp_path / "out" / "_ledger").glob("*.json"))
    assert len(markers) == 1  # the first unit only
    second = sorted(rejects.glob("rejects-in-0-*.parquet"))[-1]
    assert list(pd.read_parquet(second)["row"]) == [70]  # the pipeline's reject, no marker yet

    rerun = run_spark(parse_config(spec), spark=spark)
    assert (rerun.skipped, rerun.committed) == (1, 3)
    redone = [
        p for p in rejects.glob("*.parquet") if p.stem.removeprefix("rejects-") not in markers
    ]
    assert rerun.rejected == sum(len(pd.read_parquet(p)) for p in redone) == 4
    found = pd.read_parquet(rejects)
    where = sorted(
        zip(found["file"].map(lambda f: int(Path(f).stem[-1])), found["row"], strict=True)
    )
    assert where == sorted((f, r) for f, r, _ in bad), "a reject lost or repeated"
    counts = pd.read_parquet(tmp_path / "out")["txn_id"].value_counts()
    assert set(counts.index) == set(range(200)) - {f * 100 + r for f, r, _ in bad}, "lost rows"
    assert counts.max() == 1, "duplicated rows"
