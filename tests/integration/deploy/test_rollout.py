"""Model updates across two replicas under steady load: zero failed requests, the new build
serves afterwards; a build that fails its smoke check is rolled back and the old one serves."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.deploy.conftest import TOKEN, SteadyLoad, X
from tritonpipe.client import Client
from tritonpipe.deploy.replicas import ReplicaSet
from tritonpipe.deploy.rollout import Replica, Rollout
from tritonpipe.errors import DeployError

pytestmark = pytest.mark.slow


def replicas(fleet: ReplicaSet) -> list[Replica]:
    return [
        Replica(name=fleet.replica_name(i), http_url=s.http_url, repository=s.options.repository)
        for i, s in enumerate(fleet.servers)
    ]


def served(fleet: ReplicaSet) -> set[float]:
    """y[0, 1] (x = 0, 1, 2, 3) as each replica answers it directly."""
    values = set()
    for server in fleet.servers:
        with Client(server.http_url, token=TOKEN) as client:
            values.add(float(client.infer("affine", {"x": X})["y"][0, 1]))
    return values


def test_update_under_load_drops_nothing_then_a_bad_build_is_rolled_back(
    fleet: ReplicaSet, builds: dict[str, Path]
) -> None:
    assert fleet.balancer is not None
    for server in fleet.servers:
        server.wait_ready(120)  # the failover tests may have just restarted one
    old = served(fleet)
    assert old == {2 * 1 + 1}
    rollout = Rollout(replicas(fleet), fleet.balancer.runtime, token=TOKEN)
    with SteadyLoad([fleet.balancer.http_url, fleet.balancer.grpc_url]) as load:
        updates = rollout.run(builds["v2"])
        switched = time.monotonic()
        time.sleep(0.5)
        with pytest.raises(DeployError) as info:
            rollout.run(builds["bad"])
        time.sleep(0.5)
    print(
        json.dumps({"requests_during_updates": len(load.outcomes), "failed": len(load.failures())})
    )
    assert not load.failures(), load.failures()[:3]
    assert len(load.outcomes) > 100
    # Both builds answered during the update, and only the new one after it.
    assert load.values() == {3.0, 4.0}
    assert load.values(since=switched) == {4.0}
    assert served(fleet) == {4.0}
    for update in updates:
        assert set(update.versions) == {"affine", "scale", "shift"}
        assert all(update.unloaded[m] == v - 1 for m, v in update.versions.items())
    message = str(info.value)
    assert "previous build still serves" in message
    assert "smoke request to 'affine'" in message and "offset must not be negative" in message
    # No trace of the refused build on disk.
    for replica in replicas(fleet):
        assert (
            max(int(p.name) for p in (replica.repository / "shift").iterdir() if p.name.isdigit())
            == updates[0].versions["shift"]
        )
