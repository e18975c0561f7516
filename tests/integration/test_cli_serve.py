"""`tritonpipe serve` and `tritonpipe infer` as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.integration.lines import Lines
from tritonpipe.server.options import free_port


def test_serve_infer_and_stop_on_sigint(
    repository: Path, trained_export: Path, tmp_path: Path
) -> None:
    http, grpc, metrics = free_port(), free_port(), free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritonpipe.cli",
            "serve",
            str(repository),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--log-file",
            str(tmp_path / "log"),
            "--exit-timeout",
            "30",  # the repository holds ~25 Python-backend instances, ~1.2 s each to unload
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(serve)
    try:
        lines.wait_for("serving", 90)  # fails at 90 s even if serve prints nothing
        heldout = trained_export.parent / "heldout"
        truth = json.loads((heldout / "labels.json").read_text())
        names = sorted(truth)[:3]
        for url in (f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}"):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tritonpipe.cli",
                    "infer",
                    "digits",
                    *(f"image={heldout / n}" for n in names),
                    "--url",
                    url,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            out = json.loads(result.stdout)
            assert [row[0] for row in out["labels"]] == [truth[n] for n in names]
        pixels = tmp_path / "pixels.npy"
        np.save(pixels, np.zeros((2, 1, 8, 8), np.float32))
        as_json = tmp_path / "pixels.json"
        as_json.write_text(json.dumps(np.zeros((1, 1, 8, 8)).tolist()))
        for source, rows in ((pixels, 2), (as_json, 1)):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tritonpipe.cli",
                    "infer",
                    "digits_onnx",
                    str(source),
                    "--url",
                    f"grpc://127.0.0.1:{grpc}",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            assert np.array(json.loads(result.stdout)["logits"]).shape == (rows, 10)
        bad = subprocess.run(
            [
                sys.executable,
                "-m",
                "tritonpipe.cli",
                "infer",
                "digits",
                f"img={heldout / names[0]}",
                "--url",
                f"http://127.0.0.1:{http}",
            ],
            capture_output=True,
            text=True,
        )
        assert bad.returncode != 0 and "has no input 'img'" in bad.stderr
    finally:
        serve.send_signal(signal.SIGINT)
        output = lines.finish(90)
    assert serve.returncode == 0, output
    assert "tritonserver exited with code 0" in output, output
