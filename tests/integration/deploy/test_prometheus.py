"""Debian's real prometheus scrapes two replicas, the balancer and a stream worker under load:
every dashboard panel's and every alert's query over metrics that exist here returns data, the
rules load, and the p99 alert fires when the SLO is set below what the server does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.deploy.conftest import SteadyLoad
from tritonpipe.deploy.monitoring import (
    ALERTS,
    PANELS,
    Thresholds,
    alert_rules,
    dump_yaml,
    scrape_config,
)
from tritonpipe.deploy.replicas import ReplicaSet
from tritonpipe.server.options import free_port
from tritonpipe.server.redis_server import RedisServer
from tritonpipe.stream import load_config
from tritonpipe.stream.replay import replay

pytestmark = pytest.mark.slow


def get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, object] = json.loads(response.read())
    return data


def query(base: str, expr: str) -> dict[str, object]:
    return get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


@pytest.fixture(scope="module")
def stream_worker(
    builds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A real `tritonpipe stream run --metrics-port` worker scoring the deploy pipeline from a
    Redis Stream; yields its metrics host:port and its job config."""
    folder = tmp_path_factory.mktemp("stream_worker")
    redis_server = RedisServer(folder).start()
    job = folder / "job.yaml"
    job.write_text(
        dump_yaml(
            {
                "pipeline": str(builds["v1"].parent / "pipeline.yaml"),
                "name": "affine",
                "bus": {"type": "redis", "url": redis_server.url, "stream": "scores:in",
                        "output": "scores:out", "dead_letter": "scores:dead"},
                "inputs": {"x": {"field": "x"}},
                "batch": {"max_events": 8, "max_wait_ms": 10},
            }
        )
    )  # fmt: skip
    port = free_port()
    cmd = [sys.executable, "-m", "tritonpipe.cli", "stream", "run", str(job)]
    process = subprocess.Popen(
        [*cmd, "--consumer", "w0", "--metrics-port", str(port)],
        stdout=(folder / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while "metrics on" not in (folder / "worker.log").read_text():
            assert process.poll() is None, (folder / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "stream worker not ready after 60s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", job
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        redis_server.stop()


class StreamLoad:
    """Events into the worker's stream, 20 a second, until the block exits."""

    def __init__(self, job: Path) -> None:
        self.config = load_config(job)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        i = 0
        while not self.done.is_set():
            batch = [{"id": f"e{i + k}", "x": [1.0, 2.0, 3.0, 4.0], "ts": time.time()}
                     for k in range(5)]  # fmt: skip
            replay(self.config, batch)
            i += len(batch)
            self.done.wait(0.25)

    def __enter__(self) -> StreamLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


@pytest.fixture(scope="module")
def prometheus(
    fleet: ReplicaSet,
    stream_worker: tuple[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.fail(
            "prometheus/promtool not installed: run make setup (apt-get install prometheus)"
        )
    assert fleet.balancer is not None
    folder = tmp_path_factory.mktemp("prometheus")
    hostport = lambda url: url.split("://", 1)[1].split("/", 1)[0]  # noqa: E731
    config = scrape_config(
        [hostport(s.metrics_url) for s in fleet.servers],
        [hostport(fleet.balancer.metrics_url)],
        stream_workers=[stream_worker[0]],
        interval="1s",
    )
    (folder / "prometheus.yml").write_text(dump_yaml(config))
    (folder / "alerts.yml").write_text(dump_yaml(alert_rules(Thresholds(slo_ms=0.0001, for_="0s"))))
    checked = subprocess.run(
        ["promtool", "check", "config", str(folder / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(folder / "prometheus.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=2)
                break
            except OSError:
                assert process.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "prometheus not ready after 60s"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_every_query_returns_data_under_load(
    fleet: ReplicaSet, stream_worker: tuple[str, Path], prometheus: str
) -> None:
    assert fleet.balancer is not None
    live = [(q.title, q.expr) for q in PANELS if not q.pending]
    live += [(a.name, a.query) for a in ALERTS if not a.pending]
    assert any("tritonpipe_stream_" in e for _, e in live)  # the stream worker's are live
    empty: list[str] = []
    with (
        SteadyLoad([fleet.balancer.http_url, fleet.balancer.grpc_url]),
        StreamLoad(stream_worker[1]),
    ):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            empty = [t for t, e in live if not query(prometheus, e)["data"]["result"]]  # type: ignore[index]
            if not empty:
                break
            time.sleep(1)
        alerts = get(f"{prometheus}/api/v1/alerts")["data"]["alerts"]  # type: ignore[index]
        while time.monotonic() < deadline and not any(
            a["labels"]["alertname"] == "TritonP99AboveSLO" for a in alerts
        ):  # type: ignore[index]
            time.sleep(1)
            alerts = get(f"{prometheus}/api/v1/alerts")["data"]["alerts"]  # type: ignore[index]
    assert not empty, f"queries with no data: {empty}"
    firing = {a["labels"]["alertname"] for a in alerts}  # type: ignore[index]
    assert "TritonP99AboveSLO" in firing
    # The replicas are up and serving, so these stay quiet.
    assert not firing & {
        "TritonReplicaDown",
        "BalancerReplicaOutOfRotation",
        "TritonRequestFailures",
    }


def test_rules_load_and_pending_queries_parse(prometheus: str) -> None:
    # A rule's health is "unknown" until its group is first evaluated: wait for that.
    deadline = time.monotonic() + 60
    while True:
        groups = get(f"{prometheus}/api/v1/rules")["data"]["groups"]  # type: ignore[index]
        rules = {r["name"]: r for g in groups for r in g["rules"]}  # type: ignore[union-attr,index]
        if all(r["health"] != "unknown" for r in rules.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(rules) == {a.name for a in ALERTS}
    assert all(r["health"] == "ok" for r in rules.values()), rules
    # Metrics that land with other issues: the query is valid PromQL, it just has no data yet.
    for expr in [q.expr for q in PANELS if q.pending] + [a.query for a in ALERTS if a.pending]:
        assert query(prometheus, expr)["status"] == "success"
