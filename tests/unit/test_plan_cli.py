"""`tritonpipe plan` from a saved service profile (no server): the plan, its intervals, its
warnings and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tritonpipe.capacity.service import Profile, Window
from tritonpipe.capacity.simulate import Config
from tritonpipe.cli.main import app
from tritonpipe.perf.results_csv import ResultRow, write_csv

runner = CliRunner()
OVERHEAD = tuple(0.0008 + 0.0001 * (i % 7) for i in range(300))


def _profile(path: Path, scale: tuple[float, ...] = (1.0, 1.05, 0.95), **more: object) -> Path:
    windows = tuple(
        Window({b: (0.004 + 0.001 * b) * s for b in (1, 2, 4, 8)}, OVERHEAD, ((100.0, OVERHEAD),))
        for s in scale
    )
    profile = Profile(windows, Config(max_batch_size=8), "m", **more)  # type: ignore[arg-type]
    path.write_text(json.dumps(profile.to_json()))
    return path


def _plan(*args: str) -> list[str]:
    return ["plan", "--qps", "2000", "--slo-p99-ms", "40", "--price", "2", *args]


def test_plan_from_a_saved_profile(tmp_path: Path) -> None:
    profile = _profile(tmp_path / "profile.json")
    out = tmp_path / "p.json"
    result = runner.invoke(
        app, _plan("--profile", str(profile), "--json", str(out), "--report", str(tmp_path / "r"))
    )
    assert result.exit_code == 0, result.output
    assert "per million predictions" in result.output and "WARNING" not in result.output
    plan = json.loads(out.read_text())["plan"]
    cap = plan["max_qps_per_replica"]
    assert cap["low"] < cap["value"] < cap["high"] < plan["saturation_per_replica"]
    assert plan["replicas"] == -(-2000 // (cap["value"] * 0.8))
    assert plan["base_p99_ms"]["value"] > 5.0  # one execution of 5 ms and the overhead
    assert plan["model"]["a_ms"] > 3.9 and plan["model"]["b_ms"] > 0.9
    assert (tmp_path / "r" / "plan_p99.png").is_file() and (
        tmp_path / "r" / "profile.json"
    ).is_file()


def test_a_warning_travels_into_the_output_and_the_json(tmp_path: Path) -> None:
    profile = _profile(tmp_path / "w.json", warnings=("the execution time is not a straight line",))
    out = tmp_path / "p.json"
    result = runner.invoke(app, _plan("--profile", str(profile), "--json", str(out)))
    assert result.exit_code == 0, result.output
    assert "WARNING: the execution time is not a straight line" in result.output
    assert json.loads(out.read_text())["plan"]["warnings"] == [
        "the execution time is not a straight line"
    ]


def test_tune_ranks_other_knobs(tmp_path: Path) -> None:
    result = runner.invoke(app, _plan("--profile", str(_profile(tmp_path / "p.json")), "--tune"))
    assert result.exit_code == 0, result.output
    assert "knobs                    n=" in result.output


def test_plan_bad_inputs(tmp_path: Path) -> None:
    profile = _profile(tmp_path / "profile.json")
    missing = runner.invoke(app, ["plan", "--profile", str(profile), "--qps", "10"])
    assert missing.exit_code == 1 and "plan needs a price: give --price" in missing.output
    csv = tmp_path / "rates.csv"
    names = ["client_send_us", "network_us", "server_queue_us", "server_input_us"]
    names += ["server_infer_us", "server_output_us", "client_recv_us", "p50_us", "p90_us"]
    row = ResultRow(load=100, throughput=100, p95_us=1, p99_us=1, **dict.fromkeys(names, 1))
    write_csv(csv, [row], "request_rate")
    old = runner.invoke(app, _plan("--profile", str(csv)))
    assert old.exit_code == 1 and "plan no longer fits a curve to request-rate points" in old.output
    broken = tmp_path / "broken.json"
    broken.write_text('{"windows": []}')
    bad = runner.invoke(app, _plan("--profile", str(broken)))
    assert bad.exit_code == 1 and "not a service profile" in bad.output
    no_server = runner.invoke(app, ["plan", "--qps", "10", "--price", "1"])
    assert no_server.exit_code == 1 and "measuring needs --source" in no_server.output
    tight = runner.invoke(
        app, ["plan", "--profile", str(profile), "--qps", "10", "--price", "1", "--slo-p99-ms", "3"]
    )
    assert tight.exit_code == 1 and "no replica count meets it" in tight.output
    assert "Traceback" not in tight.output
