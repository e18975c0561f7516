import json
from pathlib import Path

import pytest

from tritonpipe.capacity.sweep import Measurement, Objective, ResultsFile
from tritonpipe.capacity.sweep_report import console_table, no_winner, ranked, write_sweep_report
from tritonpipe.errors import PerfError
from tritonpipe.perf.results_csv import ResultRow

HEADER = {"target": "digits", "protocol": "grpc", "window_ms": 300}


def row(load: float, throughput: float, p99_ms: float) -> ResultRow:
    return ResultRow(
        load=load,
        throughput=throughput,
        client_send_us=0,
        network_us=0,
        server_queue_us=0,
        server_input_us=0,
        server_infer_us=0,
        server_output_us=0,
        client_recv_us=0,
        p50_us=int(p99_ms * 500),
        p90_us=0,
        p95_us=0,
        p99_us=int(p99_ms * 1000),
    )


A = Measurement(
    settings={"m": {"count": 1}}, levels=[row(1, 100, 5), row(2, 180, 9), row(4, 200, 30)]
)
B = Measurement(
    settings={"m": {"count": 2}}, levels=[row(1, 90, 4), row(2, 170, 7), row(4, 260, 12)]
)
FAILED = Measurement(settings={"m": {"count": 3}}, error="model 'm': the server refused it")


def test_objectives_rank_candidates() -> None:
    slo = Objective(slo_p99_ms=12)
    assert A.best(slo) == row(2, 180, 9)
    assert [m.settings for m in ranked([A, FAILED, B], slo)] == [
        B.settings,
        A.settings,
        FAILED.settings,
    ]
    fast = Objective(min_throughput=170)
    assert B.best(fast) == row(2, 170, 7)
    assert ranked([A, B], fast)[0] is B  # 7 ms beats 9 ms
    with pytest.raises(PerfError, match="give one constraint"):
        Objective()


def test_no_config_meets_the_slo_names_the_best_p99() -> None:
    error = no_winner([A, B, FAILED], Objective(slo_p99_ms=2))
    assert str(error).startswith("no config meets p99 <= 2 ms: the best p99 reached was 4.00 ms")
    assert "170" not in str(no_winner([A, B], Objective(min_throughput=1000)))
    assert "the most was 260 infer/s" in str(no_winner([A, B], Objective(min_throughput=1000)))


def test_results_file_resumes_and_refuses_another_sweep(tmp_path: Path) -> None:
    path = tmp_path / "sweep.jsonl"
    first = ResultsFile(path, HEADER)
    first.add(A)
    first.add(FAILED)
    with path.open("a") as f:
        f.write('{"key": "half a li')  # killed mid-write: the partial line is dropped
    again = ResultsFile(path, HEADER)
    assert set(again.done) == set(first.done)
    assert again.done[next(iter(first.done))].levels == A.levels
    with pytest.raises(PerfError, match="holds a different sweep"):
        ResultsFile(path, {**HEADER, "target": "other"})
    (tmp_path / "bad.jsonl").write_text('{"not a": "sweep"\n')
    with pytest.raises(PerfError, match="not a sweep results file"):
        ResultsFile(tmp_path / "bad.jsonl", HEADER)


def test_report_and_table(tmp_path: Path) -> None:
    objective = Objective(slo_p99_ms=12)
    table = console_table([A, B, FAILED], objective)
    assert table.splitlines()[1].split()[:3] == ["1", "n=2", "260"]
    assert "refused" in table
    index = write_sweep_report([A, B, FAILED], objective, tmp_path / "r", "Sweep of m")
    page = index.read_text()
    assert '<tr class="best"><td>1</td><td>n=2</td>' in page
    assert (tmp_path / "r" / "sweep_curves.png").stat().st_size > 1000
    assert json.loads(json.dumps(A.to_json()))["levels"][0]["p99_us"] == 5000
