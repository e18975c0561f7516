"""Fresh features for the stream workers: before a batch is scored, push each transaction into its
account's window and push the accounts' updated aggregates through Feast's push source
(`account_stats_push`) to the online store, so a burst of transactions is seen by the very next
prediction (by the stream and by online requests alike).

Windows are Redis sorted sets shared by every worker (member: transaction id and amount, score:
its time), seeded from the history on first sight of an account; a redelivered transaction is
the same member, so it is never counted twice. The state pushed is the one right after the
account's previous transaction, as feature_pipeline.py computes it: a transaction is scored
against the state *before* it, exactly what the model was trained on.

Per micro-batch, not per event: two pipelined Redis round trips for the windows and one
``store.push`` of every touched account (a Redis online store writes it as one pipeline too).
Wire it into a stream job:

    before_score: fresh_features.py:push
    parameters: {repo: feature_repo, windows: "redis://127.0.0.1:6379/1", data: ...}
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

WEEK = 7 * 86_400.0
PUSH_SOURCE = "account_stats_push"  # feature_repo/definitions.py
HERE = Path(__file__).parent  # relative ``repo`` and ``data`` paths are relative to this folder


@functools.lru_cache(maxsize=4)
def _store(repo: str) -> Any:
    from feast import FeatureStore

    return FeatureStore(repo_path=repo)


@functools.lru_cache(maxsize=4)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


History = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]  # account -> ids, times, amounts


@functools.lru_cache(maxsize=2)
def _history(data: str) -> tuple[History, dict[int, tuple[float, float]]]:
    """The history's transactions by account (ids, seconds, amounts) and the accounts' homes."""
    folder = Path(data)
    txns = pd.read_parquet(folder / "transactions.parquet")
    txns = txns[txns["timestamp"] < txns["timestamp"].max().floor("D")]  # as feature_pipeline
    txns = txns.assign(t=txns["timestamp"].astype("int64") / 1e9).sort_values("t")
    by_account = {
        int(a): (g["txn_id"].to_numpy(), g["t"].to_numpy(), g["amount"].to_numpy())
        for a, g in txns.groupby("account_id")
    }
    homes = pd.read_parquet(folder / "accounts.parquet")
    home = zip(homes["account_id"], homes["home_lat"], homes["home_lon"], strict=True)
    return by_account, {int(a): (float(lat), float(lon)) for a, lat, lon in home}


def _key(account: int) -> str:
    return f"fraud:window:{account}"


def _member(txn_id: Any, amount: Any) -> str:
    return f"{int(txn_id)}:{float(amount):.4f}"


def _seed(account: int, history: History) -> dict[str, float]:
    """The account's last week of history as window members (empty for a new account)."""
    if account not in history:
        return {}
    ids, times, amounts = history[account]
    recent = times > times[-1] - WEEK
    return {
        _member(i, a): float(t)
        for i, t, a in zip(ids[recent], times[recent], amounts[recent], strict=True)
    }


def state(times: np.ndarray, amounts: np.ndarray, home: tuple[float, float]) -> dict[str, Any]:
    """The aggregates right after the last of ``times`` (sorted), as feature_pipeline.py does."""
    t = times[-1]

    def within(seconds: float) -> np.ndarray:
        return amounts[times > t - seconds]

    day, week = within(86_400.0), within(WEEK)
    return {
        "txn_count_1h": float(len(within(3600.0))),
        "txn_count_1d": float(len(day)),
        "txn_count_7d": float(len(week)),
        "amount_mean_1d": float(day.mean()),
        "amount_mean_7d": float(week.mean()),
        "amount_std_7d": float(week.std(ddof=1)) if len(week) > 1 else 0.0,
        "amount_max_7d": float(week.max()),
        "home_lat": home[0],
        "home_lon": home[1],
        "last_txn_ts": float(t),
    }


def _windows(
    r: Any, events: Sequence[dict[str, Any]], history: History
) -> list[tuple[int, list[tuple[bytes, float]]]]:
    """Add the batch to the windows; per account, the window's members before the account's
    latest transaction in the batch (so events of one account in one batch share a state)."""
    latest: dict[int, float] = {}
    for event in events:
        account, t = int(event["account_id"]), float(event["timestamp"])
        latest[account] = max(latest.get(account, t), t)
    accounts = list(latest)
    pipe = r.pipeline(transaction=False)
    for account in accounts:
        pipe.exists(_key(account))
    seeded = pipe.execute()
    for account, known in zip(accounts, seeded, strict=True):
        members = {} if known else _seed(account, history)
        if members:  # two workers seeding one account add the same members: harmless
            pipe.zadd(_key(account), members)
    for event in events:
        member = _member(event["txn_id"], event["amount"])
        pipe.zadd(_key(int(event["account_id"])), {member: float(event["timestamp"])})
    for account in accounts:
        t = latest[account]
        pipe.zremrangebyscore(_key(account), "-inf", t - WEEK - 86_400.0)
        # Everything before the account's latest transaction in the batch: its state to score.
        pipe.zrangebyscore(_key(account), t - WEEK, f"({t}", withscores=True)
    replies = pipe.execute()
    ranges = replies[len(replies) - 2 * len(accounts) :][1::2]  # after each ZREMRANGEBYSCORE
    return list(zip(accounts, ranges, strict=True))


def push(events: Sequence[dict[str, Any]], *, repo: str, windows: str, data: str) -> None:
    """Add the batch's transactions to their windows; push each touched account's state.
    Called with no events (at the worker's start), it only loads the history and the store."""
    r, (history, homes) = _redis(windows), _history(str(HERE / data))
    store = _store(str(HERE / repo))
    if not events:
        return
    rows = []
    for account, members in _windows(r, events, history):
        if not members or account not in homes:
            continue
        times = np.array([s for _, s in members])
        amounts = np.array([float(m.decode().split(":", 1)[1]) for m, _ in members])
        row = state(times, amounts, homes[account])
        row["account_id"] = account
        row["event_timestamp"] = pd.Timestamp(times[-1], unit="s", tz="UTC") + pd.Timedelta(
            milliseconds=1
        )
        rows.append(row)
    if rows:
        from feast.data_source import PushMode

        frame = pd.DataFrame(rows)
        floats = [c for c in frame.columns if c.startswith(("txn_", "amount_", "home_"))]
        frame[floats] = frame[floats].astype(np.float32)
        store.push(PUSH_SOURCE, frame, to=PushMode.ONLINE)
