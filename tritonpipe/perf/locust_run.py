"""`tritonpipe perf locust`: a headless locust run, its CSV stats and a perf_analyzer row."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tritonpipe.client import Client
from tritonpipe.client.protocol import Endpoint
from tritonpipe.errors import PerfError, TritonPipeError
from tritonpipe.perf.results_csv import ResultRow, write_csv
from tritonpipe.perf.server_stats import Snapshot, delta, snapshot

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True, kw_only=True)
class LocustRun:
    url: str
    model: str
    users: int = 4
    spawn_rate: float = 4.0
    run_time: str = "20s"
    input_data: str = "random"
    batch_size: int = 1
    csv_prefix: Path = Path("locust")


@dataclass(frozen=True)
class LocustResult:
    requests: int
    failures: int
    row: ResultRow
    stats_csv: Path
    perf_csv: Path


def _server_snapshot(url: str) -> Snapshot:
    with Client(url) as client:
        return snapshot(client.statistics())


def _composing(url: str, model: str) -> list[str]:
    with Client(url) as client:
        config = client.model(model).config
    return [s["model_name"] for s in config.get("ensemble_scheduling", {}).get("step", [])] or [
        model
    ]


def run_locust(options: LocustRun) -> LocustResult:
    endpoint = Endpoint.parse(options.url)
    user = "TritonGrpcUser" if endpoint.protocol == "grpc" else "TritonHttpUser"
    try:
        models = _composing(options.url, options.model)
        before = _server_snapshot(options.url)
    except TritonPipeError as exc:
        raise PerfError(f"cannot reach {options.url}: {exc}") from None
    options.csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        user,
        "--headless",
        "--host",
        options.url,
        "-u",
        str(options.users),
        "-r",
        f"{options.spawn_rate:g}",
        "-t",
        options.run_time,
        "--csv",
        str(options.csv_prefix),
        "--only-summary",
        "--model",
        options.model,
        "--input-data",
        options.input_data,
        "--batch-size",
        str(options.batch_size),
        "--exit-code-on-error",
        "0",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    stats = Path(f"{options.csv_prefix}_stats.csv")
    if done.returncode != 0 or not stats.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise PerfError(f"locust failed (exit {done.returncode}):\n{tail}")
    after = _server_snapshot(options.url)
    with stats.open(newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    total = rows.get("Aggregated")
    if total is None or int(total["Request Count"]) == 0:
        raise PerfError(f"{stats}: locust made no requests")
    server = delta(before, after, models)
    avg_us = float(total["Average Response Time"]) * 1000

    def pct(column: str) -> int:
        return round(float(total[column] or 0) * 1000)

    row = ResultRow(
        load=options.users,
        throughput=round(float(total["Requests/s"]) * options.batch_size, 3),
        client_send_us=0,
        network_us=max(0, round(avg_us - server.total_us)),
        server_queue_us=server.queue_us,
        server_input_us=server.input_us,
        server_infer_us=server.infer_us,
        server_output_us=server.output_us,
        client_recv_us=0,
        p50_us=pct("50%"),
        p90_us=pct("90%"),
        p95_us=pct("95%"),
        p99_us=pct("99%"),
    )
    perf_csv = Path(f"{options.csv_prefix}_perf_analyzer.csv")
    write_csv(perf_csv, [row], "concurrency")
    return LocustResult(
        int(total["Request Count"]), int(total["Failure Count"]), row, stats, perf_csv
    )
