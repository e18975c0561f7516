"""Known-answer devices on a real tritonserver: each execution holds the device at least
A + B x rows ms, one execution at a time across instances and across servers; and `plan`
profiling one, planning and validating on it end to end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tritonpipe.capacity.device import Device, write_device
from tritonpipe.capacity.service import batch_times
from tritonpipe.client import Client
from tritonpipe.perf.generator import ProfileOptions, Profiler
from tritonpipe.server import ServerOptions, TritonServer

pytestmark = pytest.mark.slow


def _load(server: TritonServer, model: str, concurrency: int, rows: int = 1) -> None:
    options = ProfileOptions(
        model=model,
        url=server.grpc_url,
        batch_size=rows,
        loads=(concurrency,),
        measurement_interval_ms=400,
        max_trials=3,
        stability_percentage=100,
        input_data="zero",
    )
    asyncio.run(Profiler(options).run())


def _times(server: TritonServer, model: str) -> dict[int, tuple[int, int]]:
    with Client(server.http_url) as client:
        return batch_times(client.statistics(model), model)


def test_executions_hold_the_device_for_a_plus_b_rows(tmp_path: Path) -> None:
    device = Device(name="kad", a_ms=6, b_ms=2, count=1, max_batch_size=8, lock=tmp_path / "d")
    write_device(tmp_path / "repo", device)
    with TritonServer(
        ServerOptions(repository=tmp_path / "repo"), log_path=tmp_path / "s.log"
    ) as s:
        for rows in (1, 8):
            _load(s, "kad", 1, rows)
        times = _times(s, "kad")
    means = {b: ns / n / 1e6 for b, (n, ns) in times.items()}
    assert set(means) == {1, 8}
    # A + B x rows is a floor: the sleep never ends early; the backend adds to it (by how
    # much depends on the machine's load, so only the floors are checked).
    assert means[1] >= 8 and means[8] >= 22


def test_one_device_serves_one_execution_at_a_time_across_instances_and_servers(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "shared.lock"
    servers = []
    for i in (1, 2):
        device = Device(name="kas", a_ms=15, b_ms=0.5, count=2, max_batch_size=4, lock=lock)
        write_device(tmp_path / f"repo{i}", device)
        servers.append(
            TritonServer(
                ServerOptions(repository=tmp_path / f"repo{i}"), log_path=tmp_path / f"{i}.log"
            )
        )
    for s in servers:
        s.start()
    try:
        before = [_times(s, "kas") for s in servers]
        start = time.perf_counter()
        loads = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tritonpipe.cli",
                    "perf",
                    "profile",
                    "-m",
                    "kas",
                    "-u",
                    s.grpc_url.split("://")[1],
                    "-i",
                    "grpc",
                    "--concurrency-range",
                    "8",
                    "-p",
                    "500",
                    "--max-trials",
                    "3",
                    "--stability-percentage",
                    "100",
                ],
                stdout=subprocess.DEVNULL,
            )
            for s in servers
        ]
        for p in loads:
            assert p.wait(120) == 0
        elapsed = time.perf_counter() - start
        after = [_times(s, "kas") for s in servers]
    finally:
        for s in servers:
            s.stop()
    held = 0.0
    executions = 0
    for b0, b1 in zip(before, after, strict=True):
        for size, (n, _) in b1.items():
            done = n - b0.get(size, (0, 0))[0]
            executions += done
            held += done * (15 + 0.5 * size) / 1000
    # Four instances in two servers: were the device not shared, they would hold it for up
    # to four times the time that passed.
    assert executions > 50
    assert held <= elapsed * 1.02, (held, elapsed)


def test_plan_profiles_plans_and_validates_a_device(tmp_path: Path) -> None:
    device = Device(name="kap", a_ms=4, b_ms=1, count=2, max_batch_size=4, lock=tmp_path / "p")
    write_device(tmp_path / "repo", device)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonpipe.cli",
            "plan",
            "--source",
            str(tmp_path / "repo"),
            "-m",
            "kap",
            "--qps",
            "1000",
            "--slo-p99-ms",
            "60",
            "--price",
            "1",
            "--validate",
            "--window-ms",
            "200",
            "--stability-percentage",
            "1000",
            "--json",
            str(tmp_path / "plan.json"),
            "--report",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads((tmp_path / "plan.json").read_text())
    plan = result["plan"]
    assert plan["config"] == "n=2,b=4,d=0"
    # Two instances share one device: never more than its full batches allow.
    assert plan["saturation_per_replica"] <= 4 / 8 * 1000 * 1.01
    assert plan["model"]["b_ms"] >= 0.9 and plan["base_p99_ms"]["value"] >= 5
    assert [c["fraction"] for c in result["validation"]] == [0.5, 0.7, 0.9]
    assert "2 instances at saturation" in done.stdout and "(values in brackets" in done.stdout
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonpipe.cli",
            "plan",
            "--profile",
            str(tmp_path / "r" / "profile.json"),
            "--qps",
            "1000",
            "--slo-p99-ms",
            "60",
            "--price",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert f"replicas                 {plan['replicas']}" in again.stdout


def test_the_guided_sweep_climbs_within_its_budget_on_a_device(tmp_path: Path) -> None:
    """`perf sweep --strategy guided` end to end: a profile, a simulated ranking, then at most
    a quarter of the grid measured (here 2 of 6), each with the bisected concurrency levels,
    and a winner named from the measurements."""
    repo, results = tmp_path / "repo", tmp_path / "sweep.jsonl"
    write_device(repo, Device(name="gd", a_ms=2, b_ms=0.5, max_batch_size=8, lock=tmp_path / "d"))
    command = [sys.executable, "-m", "tritonpipe.cli", "perf", "sweep", str(repo), "-m", "gd"]
    command += ["--slo-p99-ms", "300", "--strategy", "guided", "--count", "1,2"]
    command += ["--max-batch-size", "2,4,8", "--queue-delay-us", "0", "--window-ms", "300"]
    command += ["--max-concurrency", "8", "--input-data", "zero", "--results", str(results)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "profiling 'gd'" in done.stdout + done.stderr and "best: n=" in done.stdout
    measured = [json.loads(line) for line in results.read_text().splitlines()[1:]]
    assert 1 <= len(measured) <= 2  # a quarter of 6 points, at least 2
    assert all(m["levels"] and not m["error"] for m in measured)
