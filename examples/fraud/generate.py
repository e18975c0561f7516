"""Seeded synthetic card transactions with learnable fraud, for the fraud example.

    python examples/fraud/generate.py --out examples/fraud/artifacts/data

Accounts live around a handful of cities and spend near home at their own pace and typical amount;
merchants have categories. A few accounts are compromised at a random moment: a burst of
transactions follows, mostly far from home, at night and for unusual amounts. Writes
transactions.parquet (txn_id, account_id, timestamp, amount, merchant_lat, merchant_lon, category,
is_fraud) and accounts.parquet (account_id, home_lat, home_lon). Vectorised numpy: ~0.5 M rows in
a few seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2026-01-01", tz="UTC")
CITIES = np.array(  # lat, lon
    [[48.86, 2.35], [51.51, -0.13], [52.52, 13.40], [40.42, -3.70], [41.90, 12.50], [50.85, 4.35]]
)
CATEGORIES = 8  # grocery, fuel, restaurants, travel, electronics, fashion, online, cash
KM_PER_DEG = 111.0


def _accounts(rng: np.random.Generator, n: int) -> pd.DataFrame:
    city = rng.integers(0, len(CITIES), n)
    home = CITIES[city] + rng.normal(0, 0.15, (n, 2))
    return pd.DataFrame(
        {
            "account_id": np.arange(1, n + 1, dtype=np.int64),
            "home_lat": home[:, 0].astype(np.float32),
            "home_lon": home[:, 1].astype(np.float32),
            "rate_per_day": rng.gamma(2.0, 1.6, n),
            "typical_amount": np.exp(rng.normal(3.3, 0.6, n)),
        }
    )


def _hours(rng: np.random.Generator, n: int, night: float) -> np.ndarray:
    """Hour offsets within a day: daytime-heavy, or night-heavy for fraud."""
    day = np.clip(rng.normal(14.0, 3.5, n), 6, 23.99)
    late = rng.uniform(0, 5.99, n)
    return np.where(rng.random(n) < night, late, day)


def _legit(rng: np.random.Generator, acc: pd.DataFrame, days: int) -> pd.DataFrame:
    counts = rng.poisson(acc["rate_per_day"].to_numpy() * days)
    idx = np.repeat(np.arange(len(acc)), counts)
    n = len(idx)
    day = rng.integers(0, days, n)
    seconds = (day * 24 + _hours(rng, n, night=0.04)) * 3600.0
    travel = rng.random(n) < 0.03  # legitimate trips: far from home, normal amounts
    home = acc[["home_lat", "home_lon"]].to_numpy()[idx]
    spot = np.where(
        travel[:, None],
        CITIES[rng.integers(0, len(CITIES), n)] + rng.normal(0, 0.3, (n, 2)),
        home + rng.normal(0, 0.08, (n, 2)),
    )
    amount = acc["typical_amount"].to_numpy()[idx] * np.exp(rng.normal(0, 0.55, n))
    return _frame(acc, idx, seconds, spot, amount, rng.integers(0, 6, n), np.zeros(n, bool))


def _fraud(rng: np.random.Generator, acc: pd.DataFrame, days: int, share: float) -> pd.DataFrame:
    victims = rng.choice(len(acc), int(len(acc) * share), replace=False)
    size = rng.integers(2, 9, len(victims))  # a burst of 2..8 transactions
    idx = np.repeat(victims, size)
    n = len(idx)
    start_day = np.repeat(rng.integers(1, days, len(victims)), size)
    start_hour = np.repeat(_hours(rng, len(victims), night=0.6), size)
    gaps = np.cumsum(rng.exponential(12.0, n))  # minutes between burst transactions
    first = np.repeat(np.r_[0, np.cumsum(size)[:-1]], size)
    seconds = (start_day * 24 + start_hour) * 3600.0 + (gaps - gaps[first]) * 60.0
    far = rng.random(n) < 0.8
    home = acc[["home_lat", "home_lon"]].to_numpy()[idx]
    away = np.column_stack([rng.uniform(-35, 60, n), rng.uniform(-120, 140, n)])
    spot = np.where(far[:, None], away, home + rng.normal(0, 0.1, (n, 2)))
    scale = np.where(rng.random(n) < 0.7, rng.uniform(3, 12, n), np.exp(rng.normal(0, 0.5, n)))
    amount = acc["typical_amount"].to_numpy()[idx] * scale
    category = rng.choice([3, 4, 6, 7], n)
    return _frame(acc, idx, seconds, spot, amount, category, np.ones(n, bool))


def _frame(
    acc: pd.DataFrame,
    idx: np.ndarray,
    seconds: np.ndarray,
    spot: np.ndarray,
    amount: np.ndarray,
    category: np.ndarray,
    fraud: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": acc["account_id"].to_numpy()[idx],
            "ms": np.round(seconds * 1000).astype(np.int64),
            "amount": np.round(amount, 2).astype(np.float32),
            "merchant_lat": spot[:, 0].astype(np.float32),
            "merchant_lon": spot[:, 1].astype(np.float32),
            "category": category.astype(np.int64),
            "is_fraud": fraud,
        }
    )


def generate(
    accounts: int = 5000, days: int = 28, fraud_share: float = 0.12, seed: int = 7
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transactions, accounts), sorted by time; timestamps are unique per account (1 ms apart)."""
    rng = np.random.default_rng(seed)
    acc = _accounts(rng, accounts)
    txns = pd.concat([_legit(rng, acc, days), _fraud(rng, acc, days, fraud_share)])
    txns = txns[txns["ms"] < days * 86_400_000].sort_values(["account_id", "ms"], kind="stable")
    # Feature rows are stamped 1 ms after their transaction, so two transactions of one account
    # are kept at least 2 ms apart: b[i] = max(a[i], b[i-1] + 2) is a running max of a[i] - 2i.
    rank = txns.groupby("account_id").cumcount().to_numpy() * 2
    shifted = pd.Series(txns["ms"].to_numpy() - rank, index=txns.index)
    ms = shifted.groupby(txns["account_id"]).cummax().to_numpy() + rank
    txns["timestamp"] = START + pd.to_timedelta(ms, unit="ms")
    txns = txns.drop(columns="ms").sort_values("timestamp", kind="stable").reset_index(drop=True)
    txns.insert(0, "txn_id", np.arange(len(txns), dtype=np.int64))
    return txns, acc[["account_id", "home_lat", "home_lon"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "artifacts" / "data")
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    start = time.perf_counter()
    txns, acc = generate(args.accounts, args.days, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    txns.to_parquet(args.out / "transactions.parquet", index=False)
    acc.to_parquet(args.out / "accounts.parquet", index=False)
    print(
        f"generated {len(txns):,} transactions ({txns['is_fraud'].mean():.2%} fraud) for "
        f"{len(acc):,} accounts over {args.days} days in {time.perf_counter() - start:.1f} s "
        f"-> {args.out}"
    )


if __name__ == "__main__":
    main()
