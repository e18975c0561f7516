"""`tritonpipe infer --record`: JSON records in, JSON output records out (text as strings)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tritonpipe.cli.main import app
from tritonpipe.server import TritonServer

READING = {
    "temperature": 95.0,
    "vibration": 0.9,
    "pressure": 101.3,
    "current": 12,
    "rpm": 1500,
    "humidity": 40.0,
    "sensor_type": "pump",
}


def test_infer_takes_json_records(sensors_server: TritonServer, tmp_path: Path) -> None:
    url = sensors_server.grpc_url
    one = CliRunner().invoke(
        app, ["infer", "sensors", "--url", url, "--record", json.dumps(READING)]
    )
    assert one.exit_code == 0, one.output
    answer = json.loads(one.stdout)
    assert answer["alert"] == "alert" and 0.5 < answer["score"] <= 1.0
    calm = {**READING, "temperature": 60.0, "vibration": 0.4}
    (tmp_path / "more.jsonl").write_text(f"{json.dumps(READING)}\n{json.dumps(calm)}\n")
    many = CliRunner().invoke(
        app,
        [
            "infer",
            "sensors",
            "--url",
            sensors_server.http_url,
            "--record",
            f"@{tmp_path / 'more.jsonl'}",
        ],
    )
    assert many.exit_code == 0, many.output
    assert [r["alert"] for r in json.loads(many.stdout)] == ["alert", "ok"]


def test_infer_names_the_bad_value(sensors_server: TritonServer) -> None:
    bad = {**READING, "temperature": None}
    result = CliRunner().invoke(
        app, ["infer", "sensors", "--url", sensors_server.http_url, "--record", json.dumps(bad)]
    )
    assert result.exit_code == 1
    assert "error: record 0: input 'temperature': null" in result.output
    wrong = CliRunner().invoke(
        app, ["infer", "sensors", "--url", sensors_server.http_url, "--record", "{nope"]
    )
    assert wrong.exit_code == 1 and "--record: not JSON" in wrong.output
