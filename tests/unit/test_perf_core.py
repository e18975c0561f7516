"""The profiler's pure parts with known answers: Triton statistics deltas, per-step counters,
request data, CSV rows. Written to kill the mutants `make mutation` found surviving."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from tritonpipe.client.checks import ModelInfo
from tritonpipe.errors import PerfError
from tritonpipe.perf import input_data
from tritonpipe.perf.results_csv import COLUMNS, ResultRow, read_csv, write_csv
from tritonpipe.perf.server_stats import ModelCounters, ServerTimes, delta, snapshot
from tritonpipe.perf.step_metrics import StepRow, parse, read_steps, scrape, write_steps
from tritonpipe.perf.step_metrics import delta as step_delta


def _entry(name: str, success: int, inferences: int, executions: int, base_ns: int) -> dict:
    stats = {s: {"count": success, "ns": base_ns * (i + 1)} for i, s in enumerate(STAGES)}
    stats["success"] = {"count": success, "ns": 1}
    return {
        "name": name,
        "version": "1",
        "inference_count": str(inferences),  # Triton's HTTP JSON has strings for uint64
        "execution_count": executions,
        "inference_stats": stats,
    }


STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


def test_snapshot_parses_and_sums_versions() -> None:
    stats = {
        "model_stats": [
            _entry("a", 10, 40, 5, 1000),
            _entry("a", 2, 8, 1, 100),  # version 2 of the same model
            _entry("b", 3, 3, 3, 7),
        ]
    }
    snap = snapshot(stats)
    assert snap["a"] == ModelCounters(
        success=12,
        inferences=48,
        executions=6,
        ns={"queue": 1100, "compute_input": 2200, "compute_infer": 3300, "compute_output": 4400},
    )
    assert snap["b"].ns["compute_output"] == 28 and snap["b"].success == 3
    assert snapshot({}) == {}
    empty = ModelCounters.parse({"name": "c"})
    assert empty == ModelCounters(0, 0, 0, dict.fromkeys(STAGES, 0))


def test_delta_averages_per_request_and_sums_models() -> None:
    before = snapshot({"model_stats": [_entry("a", 10, 40, 5, 0), _entry("b", 10, 10, 10, 0)]})
    after = snapshot(
        {"model_stats": [_entry("a", 20, 80, 8, 2_000_000), _entry("b", 30, 30, 20, 10_000)]}
    )
    # a: 10 requests; queue 2 ms total -> 200 us each; input 400, infer 600, output 800.
    one = delta(before, after, ["a"])
    assert one == ServerTimes(10, 40, 3, 200, 400, 600, 800)
    assert one.total_us == 2000
    # b: 20 requests; queue 10 us total -> 0.5 us each; summed with a's per-request times.
    both = delta(before, after, ["a", "b"])
    assert both.requests == 20 and both.inferences == 40 and both.executions == 13
    assert (both.queue_us, both.input_us, both.infer_us, both.output_us) == (200, 401, 602, 802)
    # A model missing from either snapshot, or with no new requests, adds nothing.
    assert delta(before, after, ["missing"]) == ServerTimes(0, 0, 0, 0, 0, 0, 0)
    assert delta(after, after, ["a"]) == ServerTimes(0, 0, 0, 0, 0, 0, 0)
    assert delta({}, after, ["a"]) == ServerTimes(0, 0, 0, 0, 0, 0, 0)


METRICS = (
    'tritonpipe_step_executions_total{model="m",step="pre",position="0"} 4\n'
    'tritonpipe_step_requests_total{model="m",step="pre",position="0"} 8\n'
    'tritonpipe_step_duration_us_total{model="m",step="pre",position="0"} 100\n'
    'tritonpipe_step_executions_total{model="m",step="net"} 2\n'  # no position: first
    'tritonpipe_step_duration_us_total{model="m",position="3"} 5\n'  # no step: ignored
)


def test_parse_without_position_or_step_and_missing_kinds() -> None:
    counters = parse(METRICS, "m")
    assert counters == {"net": (2.0, 0.0, 0.0), "pre": (4.0, 8.0, 100.0)}
    assert list(counters) == ["net", "pre"]


def test_step_delta_skips_idle_steps_and_new_steps_count_from_zero() -> None:
    after = {"a": (4.0, 8.0, 300.0), "idle": (5.0, 5.0, 50.0), "new": (2.0, 0.0, 100.0)}
    before = {"a": (2.0, 4.0, 100.0), "idle": (5.0, 5.0, 50.0)}
    rows = step_delta(before, after, 0.5)
    assert [r.step for r in rows] == ["a", "new"]
    a, new = rows
    assert a == StepRow("a", 4.0, 2.0, 100.0, 50.0, pytest.approx(200 / 300))
    assert new == StepRow("new", 4.0, 0.0, 50.0, 0.0, pytest.approx(100 / 300))
    assert step_delta({}, {"z": (0.0, 0.0, 0.0)}, 1.0) == []


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        body = METRICS.encode()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_url() -> Iterator[str]:
    httpd = HTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_scrape_reads_a_metrics_endpoint(metrics_url: str) -> None:
    assert scrape(f"{metrics_url}/metrics", "m")["pre"] == (4.0, 8.0, 100.0)
    with pytest.raises(PerfError, match=f"metrics endpoint {metrics_url}/nope: "):
        scrape(f"{metrics_url}/nope", "m")


def test_steps_csv_in_request_rate_mode_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    write_steps(path, "request_rate", [(2.5, [StepRow("a", 1.25, 2.0, 3.05, 4.0, 0.1234)])])
    assert path.read_text().splitlines() == [
        "Request Rate,Step,Executions/Second,Requests per Execution,Time per Execution (us),"
        "Time per Request (us),Share of Step Time",
        "2.5,a,1.2,2.00,3.0,4.0,0.123",
    ]
    assert read_steps(path) == [(2.5, StepRow("a", 1.2, 2.0, 3.0, 4.0, 0.123))]
    with pytest.raises(PerfError, match="cannot read"):
        read_steps(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(PerfError, match="not a tritonpipe steps CSV"):
        read_steps(tmp_path / "empty.csv")
    path.write_text(path.read_text().splitlines()[0] + "\n1,a,x,1,1,1,1\n")
    with pytest.raises(PerfError, match="s.csv: bad row"):
        read_steps(path)
    path.write_text(path.read_text().splitlines()[0] + "\n1,a,1\n")
    with pytest.raises(PerfError, match="s.csv: bad row"):
        read_steps(path)


def _info(*inputs: tuple[str, str, list[int]], batch: int = 8) -> ModelInfo:
    return ModelInfo.from_config(
        "m",
        {
            "max_batch_size": batch,
            "input": [{"name": n, "data_type": t, "dims": d} for n, t, d in inputs],
        },
    )


def test_synthetic_zero_and_random_per_dtype() -> None:
    info = _info(
        ("f", "TYPE_FP16", [2, 3]),
        ("i", "TYPE_INT32", [4]),
        ("s", "TYPE_STRING", [2]),
        ("d", "TYPE_FP32", [-1]),
    )
    [zero] = input_data.synthetic(info, "zero", {"d": (5,)})
    assert zero["f"].dtype == np.float16 and zero["f"].shape == (2, 3) and not zero["f"].any()
    assert zero["i"].dtype == np.int32 and not zero["i"].any()
    assert zero["s"].tolist() == [b"0", b"0"] and zero["d"].shape == (5,)
    [rand] = input_data.synthetic(info, "random", {"d": (5,)})
    assert rand["f"].dtype == np.float16 and rand["f"].min() >= 0 and rand["f"].max() < 1
    assert len(set(rand["f"].ravel().tolist())) > 1
    assert rand["i"].dtype == np.int32 and rand["i"].min() >= 0 and rand["i"].max() < 100
    assert len(set(rand["i"].tolist())) > 1
    assert all(len(w) == 16 and int(w, 16) >= 0 for w in rand["s"].tolist())
    assert rand["s"][0] != rand["s"][1]
    # Seeded: the same data every run, another seed other data.
    [again] = input_data.synthetic(info, "random", {"d": (5,)})
    assert np.array_equal(again["i"], rand["i"]) and again["s"].tolist() == rand["s"].tolist()
    [other] = input_data.synthetic(info, "random", {"d": (5,)}, seed=1)
    assert not np.array_equal(other["i"], rand["i"])


def test_shapes_must_fit_the_model() -> None:
    info = _info(("x", "TYPE_FP32", [2, -1]))
    assert input_data.synthetic(info, "zero", {"x": (2, 7)})[0]["x"].shape == (2, 7)
    for bad in ((3, 7), (2,), (2, 7, 1)):
        dims = ",".join(map(str, bad))
        with pytest.raises(PerfError, match=rf"--shape x:{dims} does not fit the model's FP32"):
            input_data.synthetic(info, "zero", {"x": bad})
    with pytest.raises(PerfError, match=r"input 'x' has dynamic shape \[2, -1\]; give --shape x"):
        input_data.synthetic(info, "zero", {})
    assert input_data.parse_shapes(["a:1,2", "b:c:3"]) == {"a": (1, 2), "b:c": (3,)}
    for bad in ("a:0", "a:-1", ":3", "3"):
        with pytest.raises(PerfError, match="with positive dims"):
            input_data.parse_shapes([bad])


def test_load_and_batch(tmp_path: Path) -> None:
    info = _info(("x", "TYPE_INT64", [2]))
    assert input_data.load("zero", info, {})[0]["x"].tolist() == [0, 0]
    assert input_data.load("random", info, {})[0]["x"].dtype == np.int64
    path = tmp_path / "d.json"
    path.write_text('{"data": [{"x": [1, 2]}, {"x": {"content": [3, 4], "shape": [2]}}]}')
    samples = input_data.load(str(path), info, {})
    assert [s["x"].tolist() for s in samples] == [[1, 2], [3, 4]]
    batched = input_data.batch(samples[1], 3, True)
    assert batched["x"].tolist() == [[3, 4]] * 3
    assert input_data.batch(samples[1], 3, False) is samples[1]


def test_json_values_in_detail(tmp_path: Path) -> None:
    info = _info(("s", "TYPE_STRING", [-1]), ("x", "TYPE_FP32", [2]))
    path = tmp_path / "d.json"

    def read(text: str, shapes: dict[str, tuple[int, ...]] | None = None) -> list[dict]:
        path.write_text(text)
        return input_data.from_json(path, info, shapes or {})

    [sample] = read('{"data": [{"s": {"content": ["a", "bc"], "shape": [2]}, "x": [1, 2]}]}')
    assert sample["s"].tolist() == [b"a", b"bc"] and sample["x"].dtype == np.float32
    # Without "shape" the model's shape (and --shape for dynamic dims) is used.
    [sample] = read('{"data": [{"s": ["a", "b", "c"], "x": [[1], [2]]}]}', {"s": (3,)})
    assert sample["s"].shape == (3,) and sample["x"].tolist() == [1.0, 2.0]
    with pytest.raises(PerfError, match=r"data\[0\].s: needs 'content' or 'b64'"):
        read('{"data": [{"s": {"shape": [1]}, "x": [1, 2]}]}')
    with pytest.raises(PerfError, match=r"data\[0\]: expected an object of input name"):
        read('{"data": [3]}')
    with pytest.raises(PerfError, match=r"expected \{\"data\""):
        read('{"data": []}')
    with pytest.raises(PerfError, match=r"expected \{\"data\""):
        read("[1]")
    with pytest.raises(PerfError, match=r"data\[1\]: input 'x' is missing"):
        read('{"data": [{"s": ["a"], "x": [1, 2]}, {"s": ["a"]}]}', {"s": (1,)})
    # Little-endian FP32 from b64.
    [sample] = read(
        '{"data": [{"s": ["a"], "x": {"b64": "AACAPwAAAEA="}}]}', {"s": (1,)}
    )  # 1.0, 2.0
    assert sample["x"].tolist() == [1.0, 2.0]
    document = input_data.to_json([{"x": np.array([[1.5, 2.5]], np.float32)}])
    assert document == {"data": [{"x": {"content": [1.5, 2.5], "shape": [1, 2]}}]}
    blob = input_data.to_json([{"s": np.array([b"hi"], dtype=object)}])["data"][0]["s"]
    assert blob == {"b64": "AgAAAGhp", "shape": [1]}


def test_optional_inputs_may_be_left_out(tmp_path: Path) -> None:
    info = ModelInfo.from_config(
        "m",
        {
            "input": [
                {"name": "x", "data_type": "TYPE_FP32", "dims": [1]},
                {"name": "o", "data_type": "TYPE_FP32", "dims": [1], "optional": True},
            ]
        },
    )
    assert info.optional == frozenset({"o"}) and info.max_batch_size == 0
    path = tmp_path / "d.json"
    path.write_text('{"data": [{"x": [1]}]}')
    assert list(input_data.from_json(path, info, {})[0]) == ["x"]


ROW = ResultRow(
    load=2.5,
    throughput=10.25,
    client_send_us=1,
    network_us=2,
    server_queue_us=3,
    server_input_us=4,
    server_infer_us=5,
    server_output_us=6,
    client_recv_us=7,
    p50_us=8,
    p90_us=9,
    p95_us=10,
    p99_us=11,
)


def test_results_csv_rows_sorted_and_values_exact(tmp_path: Path) -> None:
    assert ROW.values() == ["10.25", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]
    path = tmp_path / "sub" / "r.csv"
    low = ResultRow(**{**ROW.__dict__, "load": 1.0})
    write_csv(path, [ROW, low], "request_rate")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(("Request Rate", *COLUMNS))
    assert [ln.split(",")[0] for ln in lines[1:]] == ["1", "2.5"]
    mode, rows = read_csv(path)
    assert mode == "request_rate" and rows == [low, ROW]


def test_read_csv_edges(tmp_path: Path) -> None:
    head = ",".join(("Concurrency", *COLUMNS))
    path = tmp_path / "r.csv"
    # perf_analyzer may leave a column empty (read as 0) and add columns after p99.
    path.write_text(head + ",Avg latency\n\n3,1.5,,2,3,4,5,6,7,8,9,10,11.9,99\n")
    mode, [row] = read_csv(path)
    assert mode == "concurrency" and row.load == 3 and row.client_send_us == 0
    assert row.p99_us == 11 and row.throughput == 1.5
    path.write_text(head + "\n3,1.5,1\n")
    with pytest.raises(PerfError, match="r.csv:2: malformed row"):
        read_csv(path)
    path.write_text("")
    with pytest.raises(PerfError, match=r"not a perf_analyzer CSV \(header \[\]"):
        read_csv(path)
    path.write_text(head.replace("p99 latency", "p99") + "\n")
    with pytest.raises(PerfError, match="not a perf_analyzer CSV"):
        read_csv(path)
    with pytest.raises(PerfError, match="missing.csv: cannot read"):
        read_csv(tmp_path / "missing.csv")


def test_survivors_of_make_mutation_in_the_perf_core(tmp_path: Path) -> None:
    """Edge cases `make mutation` showed untested (see tests/mutation/REPORT.md)."""
    # A model missing from a snapshot is skipped, not the end of the sum; before-counts count.
    before = snapshot({"model_stats": [_entry("a", 10, 10, 1, 1_000_000)]})
    after = snapshot({"model_stats": [_entry("a", 20, 20, 2, 3_000_000)]})
    assert delta(before, after, ["missing", "a"]) == ServerTimes(10, 10, 1, 200, 400, 600, 800)
    # One new request is averaged like many.
    single = snapshot({"model_stats": [_entry("a", 11, 11, 2, 1_500_000)]})
    assert delta(before, single, ["a"]).queue_us == 500
    # A step that ran exactly once is reported; a step with only a requests line reads 0 runs.
    rows = step_delta({}, {"once": (1.0, 1.0, 10.0)}, 1.0)
    assert [r.step for r in rows] == ["once"]
    late = 'tritonpipe_step_requests_total{model="m",step="late",position="5"} 3\n'
    assert parse(METRICS + late, "m")["late"] == (0.0, 3.0, 0.0)
    # Messages name the columns.
    path = tmp_path / "s.csv"
    write_steps(path, "concurrency", [])
    path.write_text(path.read_text() + "1,a,1\n")
    with pytest.raises(PerfError, match="bad row \\(expected 7 columns\\)"):
        read_steps(path)
    head = ",".join(("Concurrency", *COLUMNS))
    path.write_text(head + "\n3,1.5,1\n")
    with pytest.raises(PerfError, match="malformed row \\(3 columns, expected 13\\)"):
        read_csv(path)
    path.write_text("a,b,c,d\n")
    with pytest.raises(
        PerfError, match=r"not a perf_analyzer CSV \(header \['a', 'b', 'c'\]\.\.\.\)"
    ):
        read_csv(path)
    # -b zero-filled integers come from [0, 100), every value possible.
    info = _info(("i", "TYPE_INT64", [5000]), ("s", "TYPE_STRING", [2, 3]))
    [sample] = input_data.synthetic(info, "random", {})
    assert sample["i"].min() == 0 and sample["i"].max() == 99
    assert sample["s"].shape == (2, 3) and sample["s"].dtype == object
    with pytest.raises(PerfError, match=r"--shape i:2,2 does not fit the model's INT64\[5000\]"):
        input_data.synthetic(info, "zero", {"i": (2, 2)})
    # Floats in perf_analyzer's %g form, integers as they are; nested folders are made.
    row = ResultRow(**{**ROW.__dict__, "throughput": 458.0, "p99_us": 1234567})
    assert row.values()[0] == "458" and row.values()[-1] == "1234567"
    write_csv(tmp_path / "a" / "b" / "r.csv", [row], "concurrency")
    assert read_csv(tmp_path / "a" / "b" / "r.csv")[1] == [row]


def test_nested_bytes_content_is_flattened_then_shaped(tmp_path: Path) -> None:
    info = _info(("s", "TYPE_STRING", [2, 2]))
    path = tmp_path / "d.json"
    path.write_text('{"data": [{"s": [["a", "b"], ["c", "d"]]}]}')
    [sample] = input_data.from_json(path, info, {})
    assert sample["s"].tolist() == [[b"a", b"b"], [b"c", b"d"]]
