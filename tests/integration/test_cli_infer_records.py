"""`tritonpipe infer --record`: JSON records in, JSON output records out (text as strings)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
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


def test_a_list_for_a_single_value_input_is_named_as_such(sensors_server: TritonServer) -> None:
    """A JSON list where the input takes one value per row: the records contract says so (not a
    dtype problem), before sending; a raw request of that shape is the server's 400 naming it."""
    listed = {**READING, "temperature": [95.0, 96.0]}
    result = CliRunner().invoke(
        app, ["infer", "sensors", "--url", sensors_server.http_url, "--record", json.dumps(listed)]
    )
    assert result.exit_code == 1
    assert (
        "error: record 0: input 'temperature': takes one value per row, got a list ([95.0, 96.0])"
        in result.output
    ), result.output
    inputs = [
        {"name": name, "datatype": "BYTES" if isinstance(value, str) else "FP32",
         "shape": [1, 1], "data": [value]}
        for name, value in READING.items()
    ]  # fmt: skip
    inputs[0] = {**inputs[0], "shape": [1, 2], "data": [95.0, 96.0]}
    body = {"inputs": inputs}
    request = urllib.request.Request(
        f"{sensors_server.http_url}/v2/models/sensors/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("the server took a list for a single-value input")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
        assert "'temperature'" in exc.read().decode()
