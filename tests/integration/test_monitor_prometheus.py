"""Debian's real prometheus scrapes a real `tritonpipe monitor serve` over drifted logs: the
gauges carry model, version and feature, and the generated ModelFeatureDrift alert (drift for N
windows) fires for the columns whose drift held N windows, not for a single drifted window."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.monitor.test_monitor import NAMES, _features, _score, _write
from tritonpipe.deploy.monitoring import Thresholds, alert_rules, dump_yaml, scrape_config
from tritonpipe.monitor import build_profile
from tritonpipe.server.options import free_port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait(what: str, check: Any, processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> Any:
    deadline = time.monotonic() + 90
    while True:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        for p, log in zip(processes, logs, strict=True):
            assert p.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"{what} not seen after 90 s"
        time.sleep(0.5)


def _serve(tmp_path: Path, name: str, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"serve-{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tritonpipe.cli", "monitor", "serve", str(tmp_path / name),
         "--profile", str(tmp_path / "profile.json"), "--prediction", "output_score",
         "--window", "1d", "--port", str(port), "--interval", "1"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    return process, log


def test_prometheus_scrapes_monitor_serve_and_the_drift_alert_fires(tmp_path: Path) -> None:
    """Version 3 drifted in its latest window only; version 4 in its last three. The generated
    rule (drift for N=3 windows) fires for version 4's drifted columns and never for 3's."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus not installed: run make setup (apt-get install prometheus)")
    rng = np.random.default_rng(5)
    ref = _features(rng, 5000)
    build_profile(ref, NAMES, _score(ref), categorical=("cat",)).save(tmp_path / "profile.json")
    _write(tmp_path / "once", [_features(rng, 2000), _features(rng, 2000, shift=6)], "3")
    held = [_features(rng, 1000)] + [_features(rng, 1000, shift=6) for _ in range(3)]
    _write(tmp_path / "held", held, "4")
    ports = [free_port(), free_port()]
    prom_port = free_port()
    (once, once_log), (hold, hold_log) = (_serve(tmp_path, n, p) for n, p in
                                          zip(("once", "held"), ports, strict=True))  # fmt: skip
    prom_log = tmp_path / "prometheus.log"
    config = scrape_config([], monitors=[f"127.0.0.1:{p}" for p in ports], interval="1s")
    config["scrape_configs"] = [j for j in config["scrape_configs"] if j["job_name"] == "monitor"]
    (tmp_path / "prometheus.yml").write_text(dump_yaml(config))
    rules = alert_rules(Thresholds(for_="0s", drift_windows=3))
    (tmp_path / "alerts.yml").write_text(dump_yaml(rules))
    drift_rule = next(r for r in rules["groups"][0]["rules"] if r["alert"] == "ModelFeatureDrift")
    assert drift_rule["expr"].endswith(">= 3")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{prom_port}"
    procs, logs = [once, hold, prom], [once_log, hold_log, prom_log]

    def query(expr: str) -> list[Any]:
        q = urllib.parse.urlencode({"query": expr})
        return list(_get(f"{base}/api/v1/query?{q}")["data"]["result"])

    def streaks() -> dict[tuple[str, str], float]:
        return {(s["metric"]["version"], s["metric"]["feature"]): float(s["value"][1])
                for s in query("tritonpipe_monitor_drift_windows")}  # fmt: skip

    try:
        series = _wait("tritonpipe_monitor_psi of both versions",
                       lambda: len({s["metric"]["version"] for s in
                                    query("tritonpipe_monitor_psi")}) == 2 and
                       query("tritonpipe_monitor_psi"), procs, logs)  # fmt: skip
        assert {s["metric"]["feature"] for s in series} == {*NAMES, "prediction"}
        assert {(s["metric"]["model"], s["metric"]["version"]) for s in series} == {
            ("scorer", "3"), ("scorer", "4")}  # fmt: skip

        def drift_alerts() -> list[tuple[str, str, str]]:
            alerts = _get(f"{base}/api/v1/alerts")["data"]["alerts"]
            return sorted((a["labels"]["version"], a["labels"]["feature"], a["state"])
                          for a in alerts if a["labels"]["alertname"] == "ModelFeatureDrift")  # fmt: skip

        firing = [("4", "prediction", "firing"), ("4", "weight", "firing")]
        assert _wait("ModelFeatureDrift firing", drift_alerts, procs, logs) == firing
        counts = streaks()
        assert counts[("3", "weight")] == counts[("3", "prediction")] == 1
        assert counts[("4", "weight")] == counts[("4", "prediction")] == 3
        assert counts[("3", "cat")] == counts[("4", "embedding")] == 0
        time.sleep(3)  # more evaluations (every 1 s): the single drifted window never alerts
        assert drift_alerts() == firing
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
