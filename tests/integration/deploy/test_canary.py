"""Canary traffic through real HAProxy weights: one replica of two serves the challenger and
takes 10% of a few thousand requests (within binomial tolerance); starting it, rolling it back
and promoting it under load fail no request."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.deploy.conftest import TOKEN, SteadyLoad, X
from tritonpipe.client import Client
from tritonpipe.deploy.canary import CANARY_FILE, Canary
from tritonpipe.deploy.replicas import ReplicaSet, ReplicaSetOptions
from tritonpipe.deploy.rollout import Replica

REQUESTS = 3000


@pytest.fixture(scope="module")
def weighted_fleet(
    builds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplicaSet]:
    options = ReplicaSetOptions(
        repository=builds["v1"],
        replicas=2,
        workdir=tmp_path_factory.mktemp("weighted_fleet"),
        token=TOKEN,
        exit_timeout_s=5,
        balance="roundrobin",
    )
    with ReplicaSet(options) as running:
        yield running


def canary_for(fleet: ReplicaSet) -> Canary:
    assert fleet.balancer is not None
    replicas = [
        Replica(name=fleet.replica_name(i), http_url=s.http_url, repository=s.options.repository)
        for i, s in enumerate(fleet.servers)
    ]
    return Canary(
        replicas, fleet.balancer.runtime, state_dir=fleet.workdir, token=TOKEN,
        balance="roundrobin",
    )  # fmt: skip


def count_answers(url: str, total: int, threads: int = 4) -> dict[float, int]:
    """y[0, 1] of ``total`` requests over ``threads`` connections: 3.0 = v1, 4.0 = v2."""
    counts: dict[float, int] = {}
    lock = threading.Lock()

    def run(n: int) -> None:
        with Client(url, token=TOKEN, timeout_s=10) as client:
            for _ in range(n):
                value = float(client.infer("affine", {"x": X})["y"][0, 1])
                with lock:
                    counts[value] = counts.get(value, 0) + 1

    workers = [threading.Thread(target=run, args=(total // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counts


def test_a_canary_at_ten_percent_takes_ten_percent_and_rolls_back_under_load(
    weighted_fleet: ReplicaSet, builds: dict[str, Path]
) -> None:
    assert weighted_fleet.balancer is not None
    url = weighted_fleet.balancer.http_url
    canary = canary_for(weighted_fleet)
    with SteadyLoad([url, weighted_fleet.balancer.grpc_url]) as load:
        canary.start(builds["v2"], share=0.1, count=1)
    assert not load.failures(), load.failures()[:3]
    assert (weighted_fleet.workdir / CANARY_FILE).is_file()
    counts = count_answers(url, REQUESTS)
    assert set(counts) == {3.0, 4.0}, counts
    total = sum(counts.values())
    spread = 4 * math.sqrt(total * 0.1 * 0.9)  # Binomial(3000, 0.1): sd 16.4
    assert abs(counts[4.0] - 0.1 * total) <= spread, counts

    # The canary replica is drained while its models reload (it is the only one rolled, yet
    # the other replica takes its traffic): no request waits on the reload, none fails.
    with SteadyLoad([url, weighted_fleet.balancer.grpc_url]) as load:
        canary.rollback(builds["v1"])
        rolled_back = time.monotonic()
        time.sleep(0.5)
    assert not load.failures(), load.failures()[:3]
    assert len(load.outcomes) > 50
    assert load.values(since=rolled_back) == {3.0}
    assert set(canary.runtime.weights().values()) == {100}
    assert not (weighted_fleet.workdir / CANARY_FILE).exists()
    assert count_answers(url, 200) == {3.0: 200}


def test_promotion_under_load_fails_no_request(
    weighted_fleet: ReplicaSet, builds: dict[str, Path]
) -> None:
    assert weighted_fleet.balancer is not None
    url = weighted_fleet.balancer.http_url
    canary = canary_for(weighted_fleet)
    canary.start(builds["v2"], share=0.1, count=1)
    # The champion replica is drained while it takes the new build: the canary alone answers.
    with SteadyLoad([url, weighted_fleet.balancer.grpc_url]) as load:
        canary.promote(builds["v2"])
        promoted = time.monotonic()
        time.sleep(0.5)
    assert not load.failures(), load.failures()[:3]
    assert len(load.outcomes) > 50
    assert load.values(since=promoted) == {4.0}
    assert set(canary.runtime.weights().values()) == {100}
    assert count_answers(url, 200) == {4.0: 200}
