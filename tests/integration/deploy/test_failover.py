"""kill -9 of one replica under steady load: no failure after the balancer's detection window,
and the replica returns to rotation once its supervisor has restarted it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.integration.deploy.conftest import SteadyLoad
from tests.integration.deploy.test_balancer import successes
from tritonpipe.deploy.balancer import Balancer
from tritonpipe.deploy.replicas import ReplicaSet

pytestmark = pytest.mark.slow

RESULTS = (
    Path(os.environ.get("TRITONPIPE_DEPLOY_RESULTS", ""))
    if os.environ.get("TRITONPIPE_DEPLOY_RESULTS")
    else None
)


@pytest.fixture(params=[2, 0], ids=["balancer-retries-on", "balancer-retries-off"])
def balancer(
    request: pytest.FixtureRequest, fleet: ReplicaSet, tmp_path: Path
) -> Iterator[Balancer]:
    """The fleet's balancer, or a second one over the same replicas that never resends."""
    assert fleet.balancer is not None
    if request.param:
        yield fleet.balancer
        return
    options = replace(fleet.balancer.options, retries=0, http_port=0, grpc_port=0, metrics_port=0)
    with Balancer(options, tmp_path) as second:
        yield second


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the Python-backend stubs of a tritonserver)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("retries", [0, 3], ids=["client-retries-off", "client-retries-on"])
def test_kill_one_replica_under_load(fleet: ReplicaSet, balancer: Balancer, retries: int) -> None:
    victim = fleet.servers[0]
    name = fleet.replica_name(0)
    window = balancer.options.detection_window_s
    restarts = victim.restarts
    with SteadyLoad([balancer.http_url, balancer.grpc_url], retries=retries) as load:
        assert victim.pid is not None
        stubs = children(victim.pid)
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        for stub in stubs:  # a SIGKILLed server cannot stop its stubs; do it for it
            with contextlib.suppress(ProcessLookupError):
                os.kill(stub, signal.SIGKILL)
        balancer.runtime.wait_state(name, up=False, timeout_s=10)
        down_after = time.monotonic() - killed_at
        # Back in rotation after the supervisor's restart, and getting traffic again.
        balancer.runtime.wait_state(name, up=True, timeout_s=120)
        back_after = time.monotonic() - killed_at
        before = successes(fleet)
        time.sleep(1.0)
    assert victim.restarts == restarts + 1
    assert successes(fleet)[0] > before[0], "the restarted replica gets no requests"
    inside = load.failures(killed_at, killed_at + window + 0.5)
    after = load.failures(killed_at + window + 0.5)
    total = len(load.outcomes)
    record = {
        "client_retries": retries,
        "balancer_retries": balancer.options.retries,
        "requests": total,
        "failed_inside_window": len(inside),
        "failed_after_window": len(after),
        "detection_window_s": window,
        "marked_down_after_s": round(down_after, 2),
        "back_in_rotation_after_s": round(back_after, 2),
        "errors": sorted({o.error for o in inside if o.error})[:3],
    }
    print(json.dumps(record))
    if RESULTS:
        with RESULTS.open("a") as out:
            out.write(json.dumps(record) + "\n")
    assert not after, f"{len(after)} failures after the detection window: {after[:3]}"
    assert total > 50
