"""Debian's real prometheus scrapes a real `tritonpipe monitor serve` over drifted logs: the
gauges carry model, version and feature, and the generated ModelFeatureDrift alert fires for the
drifted feature only."""

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


def test_prometheus_scrapes_monitor_serve_and_the_drift_alert_fires(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus not installed: run make setup (apt-get install prometheus)")
    rng = np.random.default_rng(5)
    ref = _features(rng, 5000)
    build_profile(ref, NAMES, _score(ref), categorical=("cat",)).save(tmp_path / "profile.json")
    _write(tmp_path / "logs", [_features(rng, 2000), _features(rng, 2000, shift=6)])
    port, prom_port = free_port(), free_port()
    serve_log, prom_log = tmp_path / "serve.log", tmp_path / "prometheus.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "tritonpipe.cli", "monitor", "serve", str(tmp_path / "logs"),
         "--profile", str(tmp_path / "profile.json"), "--prediction", "output_score",
         "--window", "1d", "--port", str(port), "--interval", "1"],
        stdout=serve_log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    config = scrape_config([], monitors=[f"127.0.0.1:{port}"], interval="1s")
    config["scrape_configs"] = [j for j in config["scrape_configs"] if j["job_name"] == "monitor"]
    (tmp_path / "prometheus.yml").write_text(dump_yaml(config))
    (tmp_path / "alerts.yml").write_text(dump_yaml(alert_rules(Thresholds(for_="0s"))))
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{prom_port}"
    procs, logs = [serve, prom], [serve_log, prom_log]
    try:
        q = urllib.parse.urlencode({"query": "tritonpipe_monitor_psi"})
        series = _wait("tritonpipe_monitor_psi", lambda: _get(f"{base}/api/v1/query?{q}")["data"]
                       ["result"], procs, logs)  # fmt: skip
        labels = {tuple(sorted(s["metric"].items())) for s in series}
        assert {dict(m)["feature"] for m in labels} == {*NAMES, "prediction"}
        assert {(dict(m)["model"], dict(m)["version"]) for m in labels} == {("scorer", "3")}

        def firing() -> list[str]:
            alerts = _get(f"{base}/api/v1/alerts")["data"]["alerts"]
            return sorted(a["labels"]["feature"] for a in alerts
                          if a["labels"]["alertname"] == "ModelFeatureDrift"
                          and a["state"] == "firing")  # fmt: skip

        assert _wait("ModelFeatureDrift firing", firing, procs, logs) == ["prediction", "weight"]
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
