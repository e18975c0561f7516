import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tritonpipe.client.checks import ModelInfo
from tritonpipe.errors import PerfError
from tritonpipe.perf.generator import ProfileOptions
from tritonpipe.perf.input_data import from_json, parse_shapes, synthetic, to_json
from tritonpipe.perf.perf_analyzer import _composing, arguments
from tritonpipe.perf.profile import composing_csv, parse_range
from tritonpipe.perf.report import write_report
from tritonpipe.perf.results_csv import ResultRow, read_csv, write_csv
from tritonpipe.perf.stability import is_stable

# Written by perf_analyzer 2.51.0 (-f) against the digits ensemble.
PERF_ANALYZER_CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
1,458.041,88,1316,0,32,650,87,0,1833,2518,3622,6463
4,1432.04,129,1462,0,46,1040,103,0,2589,3541,4185,5958
"""
HEADER = PERF_ANALYZER_CSV.splitlines()[0]

INFO = ModelInfo.from_config(
    "m",
    {
        "max_batch_size": 8,
        "input": [
            {"name": "image", "data_type": "TYPE_STRING", "dims": [1]},
            {"name": "x", "data_type": "TYPE_FP32", "dims": [2]},
        ],
        "output": [],
    },
)


def test_stability_needs_three_windows_within_the_percentage() -> None:
    assert not is_stable([100, 100], [1.0, 1.0], 10)
    assert is_stable([50, 100, 104, 96], [9.0, 1.0, 1.02, 0.98], 10)
    assert not is_stable([100, 125, 100], [1.0, 1.0, 1.0], 10)  # throughput spread
    assert not is_stable([100, 100, 100], [1.0, 1.5, 1.0], 10)  # latency spread
    assert is_stable([100, 125, 100], [1.0, 1.0, 1.0], 20)


def test_csv_header_and_units_match_perf_analyzer(tmp_path: Path) -> None:
    source = tmp_path / "pa.csv"
    source.write_text(PERF_ANALYZER_CSV)
    mode, rows = read_csv(source)
    assert mode == "concurrency" and rows[1].p99_us == 5958 and rows[1].throughput == 1432.04
    again = tmp_path / "again.csv"
    write_csv(again, rows, mode)
    assert again.read_text() == PERF_ANALYZER_CSV  # same header, same integer microseconds
    write_csv(tmp_path / "rate.csv", rows, "request_rate")
    assert (
        (tmp_path / "rate.csv")
        .read_text()
        .startswith("Request Rate,Inferences/Second,Client Send,")
    )


def test_read_csv_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(PerfError, match="not a perf_analyzer CSV"):
        read_csv(path)
    path.write_text(HEADER + "\n1,fast\n")
    with pytest.raises(PerfError, match="x.csv:2: malformed row"):
        read_csv(path)


def test_ranges() -> None:
    assert parse_range("1:16:5", integer=True) == (1, 6, 11, 16)
    assert parse_range("4", integer=True) == (4,)
    assert parse_range("50:100:25", integer=False) == (50.0, 75.0, 100.0)
    for bad in ("0:4", "4:1", "a", "1:2:0"):
        with pytest.raises(PerfError, match="range"):
            parse_range(bad, integer=True)


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(document))
    return path


def test_json_input_data_forms(tmp_path: Path) -> None:
    png = b"\x89PNG fake"
    serialized = struct.pack("<I", len(png)) + png
    floats = np.array([1.5, -2.0], np.float32).tobytes()
    path = _write(
        tmp_path,
        {
            "data": [
                {
                    "image": {"b64": base64.b64encode(serialized).decode(), "shape": [1]},
                    "x": [1, 2],
                },
                {"image": ["text"], "x": {"b64": base64.b64encode(floats).decode()}},
                {
                    "image": {"content": ["a"], "shape": [1]},
                    "x": {"content": [[3, 4]], "shape": [2]},
                },
            ]
        },
    )
    samples = from_json(path, INFO, {})
    assert samples[0]["image"].tolist() == [png] and samples[0]["x"].dtype == np.float32
    assert samples[1]["image"].tolist() == [b"text"] and samples[1]["x"].tolist() == [1.5, -2.0]
    assert samples[2]["x"].tolist() == [3.0, 4.0]
    # to_json writes what from_json reads, BYTES as b64 of the serialized tensor.
    assert from_json(_write(tmp_path, to_json(samples)), INFO, {})[0]["image"].tolist() == [png]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"rows": []}, 'expected {"data"'),
        ({"data": [{"image": ["a"]}]}, "data\\[0\\]: input 'x' is missing"),
        (
            {"data": [{"image": ["a"], "x": [1, 2], "y": [1]}]},
            "data\\[0\\]: model 'm' has no input 'y'",
        ),
        ({"data": [{"image": ["a"], "x": [1, 2, 3]}]}, "data\\[0\\].x: cannot make FP32\\[2\\]"),
        ({"data": [{"image": {"b64": "!!"}, "x": [1, 2]}]}, "data\\[0\\].image.b64: not base64"),
        (
            {"data": [{"image": {"b64": "AAAA"}, "x": [1, 2]}]},
            "data\\[0\\].image.b64: not a serialized BYTES tensor",
        ),
        (
            {"data": [{"image": {"data": 1}, "x": [1, 2]}]},
            "data\\[0\\].image: unknown keys \\['data'\\]",
        ),
        ({"data": [[{"image": ["a"]}]]}, "sequence streams"),
    ],
)
def test_bad_json_input_data_names_file_and_entry(
    tmp_path: Path, document: object, message: str
) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(PerfError, match=message) as info:
        from_json(path, INFO, {})
    assert str(path) in str(info.value)


def test_input_data_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PerfError, match="cannot read"):
        from_json(tmp_path / "missing.json", INFO, {})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PerfError, match="bad.json: not JSON"):
        from_json(tmp_path / "bad.json", INFO, {})


def test_synthetic_data_and_shapes() -> None:
    dynamic = ModelInfo.from_config(
        "d", {"input": [{"name": "t", "data_type": "TYPE_INT64", "dims": [-1]}]}
    )
    with pytest.raises(PerfError, match="give --shape t:DIMS"):
        synthetic(dynamic, "random", {})
    sample = synthetic(dynamic, "zero", parse_shapes(["t:5"]))[0]
    assert sample["t"].shape == (5,) and not sample["t"].any()
    with pytest.raises(PerfError, match="expected NAME:D1,D2"):
        parse_shapes(["t:x"])


def test_perf_analyzer_arguments() -> None:
    options = ProfileOptions(
        model="digits",
        url="grpc://h:9",
        loads=(1, 3, 5),
        input_data="d.json",
        token="t",
        percentile=95,
        shapes={"x": (3,)},
    )
    args = arguments(options, Path("o.csv"))
    assert args[:6] == ["-m", "digits", "-u", "h:9", "-i", "grpc"]
    assert "--concurrency-range" in args and "1:5:2" in args
    assert args[args.index("--percentile") :][:2] == ["--percentile", "95"]
    assert "triton-grpc-protocol-tritonpipe-token:t" in args and "x:3" in args


def test_composing_models_parsed_from_perf_analyzer_output() -> None:
    stdout = """Request concurrency: 4
  Composing models:
  digits_onnx, version: 1
      Inference count: 5354
      Avg request latency: 871 usec (overhead 2 usec + queue 561 usec + compute input 13 usec + compute infer 270 usec + compute output 24 usec)

  preprocess, version: 1
      Avg request latency: 782 usec (overhead 1 usec + queue 256 usec + compute input 15 usec + compute infer 488 usec + compute output 21 usec)
"""
    assert _composing(stdout) == {
        4.0: {"digits_onnx": (561, 13, 270, 24), "preprocess": (256, 15, 488, 21)}
    }
    assert composing_csv(Path("out/run.csv"), "preprocess") == Path("out/run_preprocess.csv")


def test_report_writes_html_and_pngs(tmp_path: Path) -> None:
    a, b = tmp_path / "batch1.csv", tmp_path / "batch8.csv"
    a.write_text(PERF_ANALYZER_CSV)
    row = ResultRow(
        load=2,
        throughput=900.0,
        client_send_us=5,
        network_us=100,
        server_queue_us=10,
        server_input_us=5,
        server_infer_us=300,
        server_output_us=5,
        client_recv_us=5,
        p50_us=400,
        p90_us=500,
        p95_us=550,
        p99_us=700,
    )
    write_csv(b, [row], "concurrency")
    index = write_report([a, b], tmp_path / "report", title="digits")
    page = index.read_text()
    assert page.count("data:image/png;base64,") == 3 and "<h1>digits</h1>" in page
    assert "<td>1432.04</td>" in page
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert pngs == ["breakdown_batch1.png", "breakdown_batch8.png", "throughput_vs_p99.png"]
    assert all((tmp_path / "report" / p).read_bytes().startswith(b"\x89PNG") for p in pngs)
