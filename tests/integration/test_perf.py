"""Short real profiles and load tests against the test server (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tritonpipe.perf.input_data import to_json
from tritonpipe.perf.locust_run import LocustRun, run_locust
from tritonpipe.perf.results_csv import read_csv
from tritonpipe.perf.step_metrics import read_steps
from tritonpipe.server import TritonServer


def profile(*args: str) -> subprocess.CompletedProcess[str]:
    """`tritonpipe perf profile ARGS` as a user runs it."""
    command = [sys.executable, "-m", "tritonpipe.cli", "perf", "profile", *args]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.fixture(scope="module")
def pngs(heldout: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("perf") / "pngs.json"
    path.write_text(json.dumps(to_json([{"image": row} for row in heldout[0][:16]])))
    return path


@pytest.mark.parametrize("engine", ["tritonpipe", "perf_analyzer"])
def test_profile_digits_ensemble_writes_perf_analyzer_csvs(
    server: TritonServer, pngs: Path, tmp_path: Path, engine: str
) -> None:
    out = tmp_path / "digits.csv"
    result = profile(
        "-m",
        "digits_steps",
        "-u",
        server.grpc_url.removeprefix("grpc://"),
        "-i",
        "grpc",
        "--concurrency-range",
        "1:2",
        "-p",
        "300",
        "--max-trials",
        "10",
        "--stability-percentage",
        "50",
        "--input-data",
        str(pngs),
        "-f",
        str(out),
        "--engine",
        engine,
    )
    assert result.returncode == 0, result.stderr
    assert "Concurrency    infer/s" in result.stdout
    header = out.read_text().splitlines()[0]
    assert header.startswith(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue"
    )
    _, rows = read_csv(out)
    assert [r.load for r in rows] == [1, 2]
    assert all(r.throughput > 0 and r.p99_us >= r.p50_us > 0 for r in rows)
    assert all(r.server_infer_us > 0 for r in rows)  # summed over the composing models
    parts = {}
    for model in ("preprocess", "digits_onnx", "postprocess"):
        _, parts[model] = read_csv(tmp_path / f"digits_{model}.csv")
        assert [p.load for p in parts[model]] == [1, 2] and parts[model][0].server_infer_us > 0
    # tritonpipe's ensemble server columns are the sum of its composing models' (within
    # rounding). perf_analyzer's own CSV is left as it writes it: its ensemble queue column is
    # the ensemble's own (a few us), not the composing models' sum.
    for i, row in enumerate(rows if engine == "tritonpipe" else []):
        for column in ("server_queue_us", "server_input_us", "server_infer_us", "server_output_us"):
            total = sum(getattr(p[i], column) for p in parts.values())
            assert abs(getattr(row, column) - total) <= len(parts), (engine, column, row)


def test_profile_request_rate_with_shared_memory(server: TritonServer, tmp_path: Path) -> None:
    out = tmp_path / "rate.csv"
    result = profile(
        "-m",
        "digits_onnx",
        "-u",
        server.http_url.removeprefix("http://"),
        "--request-rate-range",
        "50:100:50",
        "--request-distribution",
        "poisson",
        "-p",
        "300",
        "--max-trials",
        "4",
        "--stability-percentage",
        "80",
        "--shared-memory",
        "system",
        "-b",
        "4",
        "-f",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("Request Rate,Inferences/Second")
    _, rows = read_csv(out)
    assert [r.load for r in rows] == [50, 100] and rows[0].throughput > 0


def test_profile_reports_a_failing_model_clearly(server: TritonServer) -> None:
    result = profile(
        "-m",
        "digits",
        "-u",
        server.http_url.removeprefix("http://"),
        "-p",
        "100",
        "--max-trials",
        "3",
        "--input-data",
        "zero",
    )
    assert result.returncode == 1
    assert "every request failed" in result.stderr and "not a decodable image" in result.stderr


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_locust_headless_run(
    server: TritonServer, pngs: Path, tmp_path: Path, protocol: str
) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    result = run_locust(
        LocustRun(
            url=url,
            model="digits",
            users=2,
            spawn_rate=2,
            run_time="3s",
            input_data=str(pngs),
            csv_prefix=tmp_path / protocol,
        )
    )
    assert result.failures == 0 and result.requests > 10
    assert result.stats_csv.is_file()
    _, rows = read_csv(result.perf_csv)
    assert rows[0].load == 2 and rows[0].throughput > 0 and rows[0].server_infer_us > 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_raw_transport_profile_with_shared_memory(
    server: TritonServer, pngs: Path, tmp_path: Path, protocol: str
) -> None:
    out = tmp_path / "raw.csv"
    url = server.http_url if protocol == "http" else server.grpc_url
    result = profile(
        "-m",
        "digits",
        "-i",
        protocol,
        "-u",
        url.split("://")[1],
        "--transport",
        "raw",
        "--concurrency-range",
        "1:2",
        "-p",
        "300",
        "--max-trials",
        "6",
        "--stability-percentage",
        "50",
        "--shared-memory",
        "system",
        "--input-data",
        str(pngs),
        "-f",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    _, rows = read_csv(out)
    assert [r.load for r in rows] == [1, 2] and all(
        r.throughput > 0 and r.server_infer_us > 0 for r in rows
    )


def test_profile_fused_model_writes_per_step_times(
    server: TritonServer, pngs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fused.csv"
    result = profile(
        "-m",
        "digits",
        "-u",
        server.http_url.removeprefix("http://"),
        "--concurrency-range",
        "1:4:3",
        "-p",
        "300",
        "--max-trials",
        "6",
        "--stability-percentage",
        "80",
        "--input-data",
        str(pngs),
        "--metrics-url",
        server.metrics_url,
        "-f",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "per-step times" in result.stdout
    header = out.read_text().splitlines()[0]  # perf_analyzer's header, unchanged
    assert header.startswith("Concurrency,Inferences/Second,Client Send,")
    levels = read_steps(tmp_path / "fused_steps.csv")
    assert [(load, row.step) for load, row in levels] == [
        (load, step) for load in (1.0, 4.0) for step in ("preprocess", "digits_onnx", "postprocess")
    ]
    for _, row in levels:
        assert row.executions_per_s > 0 and row.us_per_execution > 0
    shares = [row.share for load, row in levels if load == 1.0]
    assert abs(sum(shares) - 1) < 0.01
    # At 4 in flight the dynamic batcher merges requests: more requests per execution than at 1.
    per_exec = {
        load: row.requests_per_execution for load, row in levels if row.step == "preprocess"
    }
    # Counters reach the endpoint up to 0.1 s late, so a window may carry a few earlier batches.
    assert per_exec[1.0] < 1.1 and per_exec[4.0] > per_exec[1.0]
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonpipe.cli",
            "perf",
            "report",
            str(out),
            "--out",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "steps_fused.png").stat().st_size > 1000
    assert "Per-step time (fused_steps.csv)" in (tmp_path / "report" / "index.html").read_text()


def test_perf_analyzer_without_a_file_writes_nothing_here(
    server: TritonServer, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "tritonpipe.cli", "perf", "profile", "-m", "digits_onnx"]
    command += ["-u", server.http_url.removeprefix("http://"), "--engine", "perf_analyzer"]
    command += ["--concurrency-range", "1", "-p", "300", "--max-trials", "4"]
    command += ["--stability-percentage", "80"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
