from pathlib import Path

from typer.testing import CliRunner

from tritonpipe.cli.main import app
from tritonpipe.perf.results_csv import ResultRow, write_csv

runner = CliRunner()


def _rows(rates: list[float], p99s_ms: list[float]) -> list[ResultRow]:
    return [
        ResultRow(
            load=r,
            throughput=r,
            client_send_us=0,
            network_us=0,
            server_queue_us=0,
            server_input_us=0,
            server_infer_us=0,
            server_output_us=0,
            client_recv_us=0,
            p50_us=int(p * 500),
            p90_us=0,
            p95_us=0,
            p99_us=int(p * 1000),
        )
        for r, p in zip(rates, p99s_ms, strict=True)
    ]


def test_plan_from_a_request_rate_csv(tmp_path: Path) -> None:
    csv = tmp_path / "rates.csv"
    write_csv(csv, _rows([100, 200, 300, 400, 450], [3.0, 3.4, 4.3, 7.0, 12.0]), "request_rate")
    result = runner.invoke(
        app,
        [
            "plan",
            "--profile",
            str(csv),
            "--qps",
            "2000",
            "--slo-p99-ms",
            "10",
            "--price",
            "2",
            "--json",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "replicas" in result.output and "per million predictions" in result.output
    assert (tmp_path / "p.json").is_file()


def test_plan_bad_inputs(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    write_csv(csv, _rows([1, 2, 4], [3.0, 4.0, 5.0]), "concurrency")
    missing = runner.invoke(app, ["plan", "--profile", str(csv), "--qps", "10"])
    assert missing.exit_code == 1 and "plan needs a price: give --price" in missing.output
    concurrency = runner.invoke(app, ["plan", "--profile", str(csv), "--qps", "10", "--price", "1"])
    assert concurrency.exit_code == 1 and "holds concurrency points" in concurrency.output
    no_server = runner.invoke(app, ["plan", "--qps", "10", "--price", "1"])
    assert no_server.exit_code == 1 and "measuring needs --source" in no_server.output
    rates = tmp_path / "r.csv"
    write_csv(rates, _rows([100, 200, 300], [3.0, 3.5, 5.0]), "request_rate")
    tight = runner.invoke(
        app, ["plan", "--profile", str(rates), "--qps", "10", "--price", "1", "--slo-p99-ms", "1"]
    )
    assert tight.exit_code == 1 and "no replica count meets it" in tight.output
