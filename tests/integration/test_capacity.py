"""perf sweep and plan against real servers they start themselves (tiny grids, short windows)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DIGITS
from tritonpipe.ensembles.spec import load_spec
from tritonpipe.perf.input_data import to_json


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tritonpipe.cli", *args]


@pytest.fixture(scope="module")
def workspace(
    trained_export: Path,
    heldout: tuple[np.ndarray, np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A copy of the digits spec (its stages and export linked) and PNG input data."""
    root = tmp_path_factory.mktemp("capacity")
    shutil.copy(DIGITS / "pipeline.yaml", root / "pipeline.yaml")
    shutil.copy(DIGITS / "stages.py", root / "stages.py")
    shutil.copytree(DIGITS / "samples", root / "samples")
    (root / "artifacts").mkdir()
    (root / "artifacts" / "export").symlink_to(trained_export)
    (root / "pngs.json").write_text(json.dumps(to_json([{"image": r} for r in heldout[0][:16]])))
    return root


def sweep_args(root: Path, *extra: str) -> list[str]:
    return cli(
        "perf",
        "sweep",
        str(root / "pipeline.yaml"),
        "-m",
        "digits",
        "--strategy",
        "brute",
        "--count",
        "1,2",
        "--max-batch-size",
        "16",
        "--queue-delay-us",
        "0",
        "--window-ms",
        "300",
        "--max-concurrency",
        "2",
        "--input-data",
        str(root / "pngs.json"),
        "--results",
        str(root / "sweep.jsonl"),
        *extra,
    )


def test_sweep_resumes_after_interruption_then_applies_the_winner(workspace: Path) -> None:
    results = workspace / "sweep.jsonl"
    first = subprocess.Popen(
        sweep_args(workspace, "--slo-p99-ms", "500"), stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and first.poll() is None:
        if results.is_file() and len(results.read_text().splitlines()) >= 2:
            first.kill()  # interrupted after one candidate
            break
        time.sleep(0.1)
    first.wait(30)
    lines = results.read_text().splitlines()
    assert first.returncode != 0 and len(lines) == 2, "the first candidate was not recorded"
    kept = json.loads(lines[1])["settings"]

    spec = workspace / "pipeline.yaml"
    comments = [line for line in spec.read_text().splitlines() if line.startswith("#")]
    out = workspace / "repo"
    second = subprocess.run(
        sweep_args(workspace, "--slo-p99-ms", "500", "--apply", "--repository-out", str(out)),
        capture_output=True,
        text=True,
    )
    assert second.returncode == 0, second.stderr
    assert "1 already in" in second.stdout
    assert "2 configs (1 measured now, 1 from" in second.stdout
    records = [json.loads(line) for line in results.read_text().splitlines()[1:]]
    assert len(records) == 2 and records[0]["settings"] == kept  # not measured again
    assert all(r["levels"] and r["error"] is None for r in records)
    # The winner went into the spec (comments kept) and the repository was rebuilt with it.
    best = second.stdout.split("best: ")[1].split()[0]
    count = int(best.split("n=")[1].split(",")[0])
    assert all(c in spec.read_text().splitlines() for c in comments)
    serving = load_spec(spec).ensembles["digits"].serving
    assert serving is not None and serving.instance_groups[0].count == count
    assert serving.max_batch_size == 16
    config = (out / "digits" / "config.pbtxt").read_text()
    assert f"count: {count}\n" in config and "max_batch_size: 16" in config
    assert (workspace / "report" / "index.html").is_file()

    # Nothing meets an impossible SLO: the answer names the best p99 reached (no new measurements).
    third = subprocess.run(
        sweep_args(workspace, "--slo-p99-ms", "0.001"), capture_output=True, text=True
    )
    assert third.returncode == 1
    assert "no config meets p99 <= 0.001 ms: the best p99 reached was" in third.stderr
    assert "Traceback" not in third.stderr


def test_sweep_of_a_model_not_served(workspace: Path) -> None:
    done = subprocess.run(
        cli(
            "perf", "sweep", str(workspace / "pipeline.yaml"), "-m", "resnet", "--slo-p99-ms", "10"
        ),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "model 'resnet' is not in" in done.stderr
    assert "digits_onnx" in done.stderr


def test_sweep_of_an_unfused_ensemble_sets_each_composing_model(workspace: Path) -> None:
    results = workspace / "steps.jsonl"
    done = subprocess.run(
        cli(
            "perf",
            "sweep",
            str(workspace / "pipeline.yaml"),
            "-m",
            "digits_steps",
            "--strategy",
            "brute",
            "--slo-p99-ms",
            "500",
            "--count",
            "1",
            "--max-batch-size",
            "8",
            "--queue-delay-us",
            "0",
            "--window-ms",
            "300",
            "--max-concurrency",
            "1",
            "--input-data",
            str(workspace / "pngs.json"),
            "--results",
            str(results),
        ),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(results.read_text().splitlines()[1])
    assert set(record["settings"]) == {"preprocess", "digits_onnx", "postprocess"}
    assert record["error"] is None and record["levels"][0]["throughput"] > 0


def test_plan_measures_fits_and_validates(workspace: Path, tmp_path: Path) -> None:
    # A sweep's results: plan serves its best config (one instance, batches of at most 8).
    best = {"digits_onnx": {"count": 1, "max_batch_size": 8, "max_queue_delay_us": 0}}
    level = {
        "load": 4,
        "throughput": 900.0,
        "client_send_us": 0,
        "network_us": 0,
        "server_queue_us": 0,
        "server_input_us": 0,
        "server_infer_us": 0,
        "server_output_us": 0,
        "client_recv_us": 0,
        "p50_us": 2000,
        "p90_us": 0,
        "p95_us": 0,
        "p99_us": 9000,
    }
    sweep = tmp_path / "sweep.jsonl"
    sweep.write_text(
        json.dumps({"sweep": {}})
        + "\n"
        + json.dumps({"key": "k", "settings": best, "levels": [level], "error": None})
        + "\n"
    )
    done = subprocess.run(
        cli(
            "plan",
            "--sweep",
            str(sweep),
            "--source",
            str(workspace / "pipeline.yaml"),
            "-m",
            "digits_onnx",
            "--qps",
            "3000",
            "--slo-p99-ms",
            "50",
            "--price",
            "1.5",
            "--validate",
            "--window-ms",
            "300",
            "--stability-percentage",
            "1000",  # behaviour, not this machine's load, is tested here
            "--json",
            str(tmp_path / "plan.json"),
            "--report",
            str(tmp_path / "r"),
        ),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["plan"]["replicas"] >= 1 and plan["plan"]["cost_per_hour"] == pytest.approx(
        1.5 * plan["plan"]["replicas"]
    )
    assert [c["fraction"] for c in plan["validation"]] == [0.5, 0.7, 0.9]
    assert all(c["measured_p99_ms"] > 0 for c in plan["validation"])
    assert "serving the sweep's best config: n=1,b=8,d=0" in done.stdout
    assert "predicted p99" in done.stdout and (tmp_path / "r" / "plan_p99.png").is_file()
    assert plan["plan"]["config"] == "n=1,b=8,d=0"
    assert sorted(plan["profile"]["windows"][0]["service_s"]) == ["1", "2", "4", "8"]
    # The measured points plan again without a server.
    again = subprocess.run(
        cli(
            "plan",
            "--profile",
            str(tmp_path / "r" / "profile.json"),
            "--qps",
            "3000",
            "--slo-p99-ms",
            "50",
            "--price",
            "1.5",
        ),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert f"replicas                 {plan['plan']['replicas']}" in again.stdout
