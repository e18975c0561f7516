"""The Triton-backed engine (`--url`, HTTP and gRPC) against a real tritonserver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.integration.batch.conftest import FLAG_PARAMETERS, job, make_rows
from tritonpipe.batch import TritonEngine, parse_config, run_job
from tritonpipe.cli.main import app
from tritonpipe.ensembles import build_repository
from tritonpipe.server import ServerOptions, TritonServer


@pytest.fixture(scope="module")
def scorer_server(scorer: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    root = tmp_path_factory.mktemp("batch_server")
    build_repository(scorer, root / "repo")
    with TritonServer(
        ServerOptions(repository=root / "repo", exit_timeout_s=5), log_path=root / "log"
    ) as running:
        yield running


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_engine_equals_in_process(
    scorer: Path, tmp_path: Path, scorer_server: TritonServer, protocol: str
) -> None:
    rows = make_rows(300)
    rows.loc[5, "amt"] = -3.0  # refused by the server: rejected, the rest scored
    rows.to_parquet(tmp_path / "in.parquet")
    reject = {"policy": "reject", "rejects": str(tmp_path / "rejects")}

    def config(out: str) -> object:
        return parse_config(
            job(
                scorer,
                tmp_path / "in.parquet",
                {"type": "parquet", "path": str(tmp_path / out)},
                bad_rows=reject,
            )
        )

    local = run_job(config("local"), progress=False)  # type: ignore[arg-type]
    url = scorer_server.http_url if protocol == "http" else scorer_server.grpc_url
    engine = TritonEngine(url, "scorer", batch_size=32, in_flight=4)
    remote = run_job(config("remote"), engine, progress=False, engine_name="triton")  # type: ignore[arg-type]
    assert (local.rows, local.rejected) == (remote.rows, remote.rejected) == (299, 1)
    a = pd.read_parquet(tmp_path / "local").sort_values("txn_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "remote").sort_values("txn_id").reset_index(drop=True)
    np.testing.assert_array_equal(a["txn_id"], b["txn_id"])
    np.testing.assert_array_equal(a["score"], b["score"])
    assert "amount must be >= 0" in pd.read_parquet(tmp_path / "rejects")["reason"].iloc[0]


def test_cli_batch_with_url_and_prediction_log(
    scorer: Path, tmp_path: Path, scorer_server: TritonServer
) -> None:
    make_rows(90).to_parquet(tmp_path / "in.parquet")
    spec = job(scorer, tmp_path / "in.parquet", {"type": "sqlite", "path": "out.db"})
    spec["log"] = {"type": "parquet", "path": str(tmp_path / "logs")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(
        app, ["batch", str(tmp_path / "job.yaml"), "--url", scorer_server.grpc_url, "--log"]
    )
    assert result.exit_code == 0, result.output
    assert "1 units committed" in result.output and "90 rows scored" in result.output
    assert "rows/s" in result.output and "ETA" in result.output
    from tritonpipe.predlog import read_logs

    logged = read_logs(str(tmp_path / "logs"))
    assert sorted(logged["txn_id"]) == list(range(90))
    bad = CliRunner().invoke(app, ["batch", str(tmp_path / "job.yaml"), "--engine", "nope"])
    assert bad.exit_code == 1 and "choose inprocess, triton or spark" in bad.output


def test_stage_parameters_take_effect_in_process_and_on_triton(
    scorer: Path, tmp_path: Path, scorer_server: TritonServer
) -> None:
    """The flag stage's threshold and weights as the spec sets them (not their defaults), in
    the in-process engine and the Triton engine alike."""
    rows = make_rows(120)
    rows.to_parquet(tmp_path / "in.parquet")
    history = np.stack(rows["history"].to_list())
    expected_alert = rows["amt"].to_numpy() > FLAG_PARAMETERS["threshold"]
    expected_risk = history @ np.asarray(FLAG_PARAMETERS["weights"])
    assert 0 < expected_alert.sum() < len(rows)  # the default threshold (1000) flags none

    def run(out: str, engine: TritonEngine | None = None) -> pd.DataFrame:
        spec = job(
            scorer, tmp_path / "in.parquet", {"type": "parquet", "path": str(tmp_path / out)}
        )
        spec["model"] = "flag"
        run_job(parse_config(spec), engine, progress=False)
        return pd.read_parquet(tmp_path / out).sort_values("txn_id").reset_index(drop=True)

    for got in (
        run("local"),
        run("remote", TritonEngine(scorer_server.grpc_url, "flag", batch_size=32)),
    ):
        assert list(got["txn_id"]) == list(range(120))
        np.testing.assert_array_equal(got["alert"].to_numpy(), expected_alert)
        np.testing.assert_allclose(got["risk"].to_numpy(), expected_risk, rtol=1e-12)
