from pathlib import Path

import pytest

from tritonpipe.errors import PerfError
from tritonpipe.perf.step_metrics import delta, parse, read_steps, write_steps
from tritonpipe.perf.wrk import parse as parse_wrk

METRICS = """\
# HELP tritonpipe_step_requests_total Inference requests a pipeline step served
# TYPE tritonpipe_step_requests_total counter
tritonpipe_step_executions_total{model="digits",step="onnx",position="1"} 10
tritonpipe_step_requests_total{model="digits",step="onnx",position="1"} 40
tritonpipe_step_duration_us_total{model="digits",step="onnx",position="1"} 1000
tritonpipe_step_executions_total{model="digits",step="pre",position="0"} 10
tritonpipe_step_requests_total{model="digits",step="pre",position="0"} 40
tritonpipe_step_duration_us_total{model="digits",step="pre",position="0"} 3000
tritonpipe_step_duration_us_total{model="other",step="pre",position="0"} 99999
nv_inference_count{model="digits",version="1"} 40
"""


def test_parse_keeps_one_model_in_step_order() -> None:
    counters = parse(METRICS, "digits")
    assert counters == {"pre": (10, 40, 3000), "onnx": (10, 40, 1000)}
    assert list(counters) == ["pre", "onnx"]  # by position, not by exposition order
    assert parse(METRICS, "nope") == {}


def test_delta_rates_and_shares() -> None:
    before = {"pre": (2.0, 8.0, 1000.0), "onnx": (2.0, 8.0, 600.0)}
    rows = delta(before, parse(METRICS, "digits"), seconds=2.0)
    pre, onnx = rows
    assert pre.step == "pre" and pre.executions_per_s == 4.0
    assert pre.requests_per_execution == 4.0 and pre.us_per_execution == 250.0
    assert pre.us_per_request == 62.5
    assert pre.share == pytest.approx(2000 / 2400) and onnx.share == pytest.approx(400 / 2400)


def test_steps_csv_round_trip(tmp_path: Path) -> None:
    rows = delta({}, parse(METRICS, "digits"), seconds=1.0)
    path = tmp_path / "x_steps.csv"
    write_steps(path, "concurrency", [(1.0, rows), (4.0, rows)])
    assert path.read_text().splitlines()[0].startswith("Concurrency,Step,Executions/Second")
    back = read_steps(path)
    assert [(load, r.step) for load, r in back] == [
        (1, "pre"),
        (1, "onnx"),
        (4, "pre"),
        (4, "onnx"),
    ]
    assert back[0][1].us_per_execution == 300.0
    path.write_text("Concurrency,Inferences/Second\n1,2\n")
    with pytest.raises(PerfError, match="not a tritonpipe steps CSV"):
        read_steps(path)


WRK = """\
Running 4s test @ http://127.0.0.1:8000/v2/models/digits/infer
  1 threads and 8 connections
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.52ms
     99%    2.50ms
  9120 requests in 4.00s, 1.10MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   2279.41
"""


def test_wrk_output() -> None:
    result = parse_wrk(WRK)
    assert result.throughput == 2279.41 and result.requests == 9120
    assert result.p50_us == 812.0 and result.p99_us == 2500.0
    assert result.errors == 6
    with pytest.raises(PerfError, match="without throughput"):
        parse_wrk("Running 1s test\n")
