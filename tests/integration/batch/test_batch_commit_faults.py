"""A unit's commit failed or killed from inside (tritonpipe.batch.faults): a unit whose data
files are in place but whose ledger marker is not is redone on rerun, every row exactly once, and
each ledger marker names exactly the files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.integration.batch.conftest import job, make_rows
from tritonpipe.batch.faults import VARIABLE


def _job_file(scorer: Path, tmp_path: Path) -> Path:
    for part in range(2):
        make_rows(120, seed=part, start=part * 120).to_parquet(tmp_path / f"in-{part}.parquet")
    output = {"type": "parquet", "path": str(tmp_path / "out"), "partition_by": ["day"]}
    spec = job(scorer, tmp_path, output)
    spec["source"]["path"] = str(tmp_path / "in-*.parquet")
    spec["source"]["rows_per_unit"] = 40  # 6 units, each split over several day= files
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _batch(config: Path, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    if fault:
        env[VARIABLE] = fault
    return subprocess.run(
        [sys.executable, "-m", "tritonpipe.cli", "batch", str(config), "--no-progress"],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip


def _markers(out: Path) -> dict[str, dict[str, object]]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "_ledger").glob("*.json")}


def _check_ledger_names_the_files(out: Path) -> None:
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*.parquet")}
    named = [f for m in _markers(out).values() for f in m["files"]]  # type: ignore[attr-defined]
    assert sorted(named) == sorted(on_disk), "ledger markers and data files disagree"
    for marker in _markers(out).values():
        files = marker["files"]
        rows = sum(len(pd.read_parquet(out / f)) for f in files)  # type: ignore[attr-defined]
        assert rows == marker["rows"]


def _exactly_once(out: Path) -> None:
    counts = pd.read_parquet(out)["txn_id"].value_counts()
    assert set(counts.index) == set(range(240)), "lost rows"
    assert counts.max() == 1, "duplicated rows"


@pytest.mark.parametrize("point", ["file", "ledger"])
def test_a_write_failing_inside_a_commit_fails_the_job_and_the_rerun_commits_it(
    scorer: Path, tmp_path: Path, point: str
) -> None:
    config = _job_file(scorer, tmp_path)
    out = tmp_path / "out"
    failed = _batch(config, f"{point}:3:raise")
    assert failed.returncode != 0, failed.stdout
    assert "injected write failure" in failed.stderr and "Traceback" not in failed.stderr
    assert len(_markers(out)) == 2  # the third unit has no marker
    # Its data files (some: after the first file; all: before the marker) are on disk.
    assert len(list(out.rglob("*.parquet"))) > sum(len(m["files"]) for m in _markers(out).values())  # type: ignore[misc,arg-type]
    rerun = _batch(config)
    assert rerun.returncode == 0, rerun.stderr
    assert len(_markers(out)) == 6
    _exactly_once(out)
    _check_ledger_names_the_files(out)


def test_a_kill_inside_a_commit_is_redone_on_rerun(scorer: Path, tmp_path: Path) -> None:
    config = _job_file(scorer, tmp_path)
    out = tmp_path / "out"
    killed = _batch(config, "ledger:4:kill")
    assert killed.returncode == -9
    assert len(_markers(out)) == 3
    rerun = _batch(config)
    assert rerun.returncode == 0, rerun.stderr
    assert "3 already done of 6" in rerun.stdout, rerun.stdout
    _exactly_once(out)
    _check_ledger_names_the_files(out)
