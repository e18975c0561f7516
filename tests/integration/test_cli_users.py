"""The CLI as users call it: `serve --token --model-control-mode explicit`, `perf locust` and
`perf report`: what each writes and its exit code."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.integration.lines import Lines
from tritonpipe.client import Client
from tritonpipe.errors import ModelNotFound, Unauthorized
from tritonpipe.perf.results_csv import read_csv
from tritonpipe.server import TritonServer
from tritonpipe.server.options import free_port

CLI = [sys.executable, "-m", "tritonpipe.cli"]


def test_serve_with_token_and_explicit_model_control(repository: Path, tmp_path: Path) -> None:
    http, grpc, metrics = free_port(), free_port(), free_port()
    serve = subprocess.Popen(
        [
            *CLI,
            "serve",
            str(repository),
            *("--http-port", str(http), "--grpc-port", str(grpc)),
            *("--metrics-port", str(metrics), "--log-file", str(tmp_path / "log")),
            *("--token", "s3cret", "--open-inference", "--model-control-mode", "explicit"),
            *("--load-model", "digits_onnx", "--exit-timeout", "5"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(serve)
    try:
        lines.wait_for("serving", 120)
        assert lines.wait_for("", 10)[-1].startswith("inference is OPEN (--open-inference)")
        url = f"http://127.0.0.1:{http}"
        pixels = np.zeros((1, 1, 8, 8), np.float32)
        with Client(url, retries=0) as anonymous:
            # Inference was opened; only the named model is loaded.
            assert anonymous.infer("digits_onnx", {"pixels": pixels})["logits"].shape == (1, 10)
            assert not anonymous.is_model_ready("preprocess")
            with pytest.raises(Unauthorized):
                anonymous.load("preprocess")  # the repository API needs the token
            with pytest.raises(Unauthorized):
                anonymous.statistics("digits_onnx")
        with Client(f"grpc://127.0.0.1:{grpc}", token="s3cret", retries=0) as admin:
            admin.load("preprocess")
            assert admin.is_model_ready("preprocess")
            assert admin.statistics("digits_onnx")["model_stats"]
            admin.unload("preprocess")
            with pytest.raises(ModelNotFound):
                admin.infer("preprocess", {"image": np.array([[b"x"]], dtype=object)})
    finally:
        serve.send_signal(signal.SIGINT)
        output = lines.finish(60)
    assert serve.returncode == 0, output


def test_perf_locust_writes_its_csvs_and_a_perf_analyzer_row(
    server: TritonServer, tmp_path: Path
) -> None:
    prefix = tmp_path / "run"
    result = subprocess.run(
        [
            *CLI,
            *("perf", "locust", "--host", server.http_url, "-m", "digits_onnx"),
            *("-u", "2", "-r", "2", "-t", "3s", "--input-data", "zero", "--csv", str(prefix)),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (prefix.parent / "run_stats.csv").is_file()
    _, rows = read_csv(prefix.parent / "run_perf_analyzer.csv")
    assert "wrote" in result.stdout and "run_perf_analyzer.csv" in result.stdout
    assert rows[0].load == 2 and rows[0].throughput > 0
    bad = subprocess.run(
        [*CLI, "perf", "locust", "--host", server.http_url, "-m", "nope", "-t", "1s"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and "nope" in bad.stderr


def test_perf_report_files_and_exit_codes(tmp_path: Path) -> None:
    csv = tmp_path / "run.csv"
    csv.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
        "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
        "p50 latency,p90 latency,p95 latency,p99 latency\n"
        "1,458.041,88,1316,0,32,650,87,0,1833,2518,3622,6463\n"
    )
    out = tmp_path / "report"
    ok = subprocess.run(
        [*CLI, "perf", "report", str(csv), "-o", str(out), "--title", "digits"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "breakdown_run.png",
        "index.html",
        "throughput_vs_p99.png",
    ]
    assert "<h1>digits</h1>" in (out / "index.html").read_text()
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    bad = subprocess.run(
        [*CLI, "perf", "report", str(other), "-o", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "other.csv: not a perf_analyzer CSV" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = subprocess.run(
        [*CLI, "perf", "report", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "missing.csv" in missing.stderr
