"""Canary traffic: a share of requests goes to replicas serving the challenger, by balancer
weights, then the challenger is promoted (registry alias moved, the rest rolled) or rolled back.

``canary`` rolls the challenger's build onto the last ``count`` replicas (each drained first, as
in any rollout) and sets weights so those replicas take ``share`` of new requests; HAProxy's
roundrobin follows weights exactly, so the balancer must run it (``serve --replicas N --balance
roundrobin``). ``promote`` points the champion alias at the challenger's version and rolls the
champion replicas onto it; ``rollback`` rolls the canary replicas back to the champion. Weights
end equal either way. Every step drains a replica before touching it: no request fails."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tritonpipe.deploy.balancer import Runtime
from tritonpipe.deploy.rollout import Replica, Rollout
from tritonpipe.errors import DeployError

CANARY_FILE = "canary.json"
MAX_WEIGHT = 256
EQUAL_WEIGHT = 100


def canary_weights(share: float, canaries: int, total: int) -> tuple[int, int]:
    """(weight per canary replica, weight per champion replica) whose canary share is closest
    to ``share`` (HAProxy weights are integers 0-256)."""
    if not 0 < share < 1:
        raise DeployError(f"share {share}: give a fraction between 0 and 1 (0.1 is 10%)")
    if not 0 < canaries < total:
        raise DeployError(
            f"{canaries} canary replica(s) of {total}: keep at least one replica on the champion"
        )
    champions = total - canaries
    best = (1, 1)
    error = float("inf")
    for w_champion in range(1, MAX_WEIGHT + 1):
        w_canary = round(share * champions * w_champion / ((1 - share) * canaries))
        if not 1 <= w_canary <= MAX_WEIGHT:
            continue
        got = canaries * w_canary / (canaries * w_canary + champions * w_champion)
        if abs(got - share) < error - 1e-12:
            best, error = (w_canary, w_champion), abs(got - share)
    return best


def expected_share(weights: tuple[int, int], canaries: int, total: int) -> float:
    w_canary, w_champion = weights
    return canaries * w_canary / (canaries * w_canary + (total - canaries) * w_champion)


class Canary:
    """Canary operations on a running replica set (``replicas.json`` from ``serve --replicas``)."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        runtime: Runtime,
        *,
        state_dir: Path,
        balance: str = "roundrobin",
        token: str | None = None,
        progress: Callable[[str], None] = print,
        rollout_options: dict[str, Any] | None = None,
    ) -> None:
        if len(replicas) < 2:
            raise DeployError("a canary needs 2 or more replicas (one keeps the champion)")
        self.replicas = list(replicas)
        self.runtime = runtime
        self.state_path = state_dir / CANARY_FILE
        self.balance = balance
        self.token = token
        self.progress = progress
        self.rollout_options = dict(rollout_options or {})

    def state(self) -> dict[str, Any] | None:
        if not self.state_path.is_file():
            return None
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def _rollout(self, replicas: Sequence[Replica], build: Path) -> None:
        rollout = Rollout(
            replicas, self.runtime, token=self.token, progress=self.progress,
            **self.rollout_options,
        )  # fmt: skip
        rollout.run(build)

    def start(self, build: Path, share: float, count: int = 1, **info: Any) -> tuple[int, int]:
        """Roll ``build`` (the challenger) onto the last ``count`` replicas; give them ``share``."""
        if self.balance != "roundrobin":
            raise DeployError(
                "the balancer runs leastconn, which does not split traffic by weight: restart "
                "the replicas with `serve --replicas N --balance roundrobin` for a canary"
            )
        if self.state() is not None:
            raise DeployError(
                f"a canary is already running ({self.state_path}); promote or roll it back first"
            )
        weights = canary_weights(share, count, len(self.replicas))
        canaries = self.replicas[-count:]
        # Weights first: each canary replica is drained while updated, then takes its share.
        self._set_weights([r.name for r in canaries], weights)
        try:
            self._rollout(canaries, build)
        except DeployError:
            self._equal()
            raise
        self.state_path.write_text(
            json.dumps(
                {"replicas": [r.name for r in canaries], "share": share,
                 "weights": list(weights), **info},
                indent=1,
            ) + "\n"
        )  # fmt: skip
        got = expected_share(weights, count, len(self.replicas))
        self.progress(
            f"canary: {', '.join(r.name for r in canaries)} take {got:.1%} of requests "
            f"(weights {weights[0]} vs {weights[1]})"
        )
        return weights

    def _running(self) -> tuple[list[Replica], list[Replica], dict[str, Any]]:
        state = self.state()
        if state is None:
            raise DeployError(f"no canary is running ({self.state_path} not found)")
        names = set(state["replicas"])
        canaries = [r for r in self.replicas if r.name in names]
        return canaries, [r for r in self.replicas if r.name not in names], state

    def promote(self, build: Path) -> dict[str, Any]:
        """Roll ``build`` (now the champion: the alias already moved) onto the other replicas."""
        _, champions, state = self._running()
        self._rollout(champions, build)
        self._equal()
        self.state_path.unlink()
        self.progress("promoted: every replica serves the new champion")
        return state

    def rollback(self, build: Path) -> dict[str, Any]:
        """Roll ``build`` (the champion) back onto the canary replicas."""
        canaries, _, state = self._running()
        self._rollout(canaries, build)
        self._equal()
        self.state_path.unlink()
        self.progress("rolled back: every replica serves the champion")
        return state

    def _set_weights(self, canaries: list[str], weights: tuple[int, int]) -> None:
        for replica in self.replicas:
            weight = weights[0] if replica.name in canaries else weights[1]
            self.runtime.set_weight(replica.name, weight)

    def _equal(self) -> None:
        for replica in self.replicas:
            self.runtime.set_weight(replica.name, EQUAL_WEIGHT)
