"""The feature pipeline: per-account windowed aggregates -> Feast offline store -> online store.

    python examples/fraud/feature_pipeline.py   # history = every day but the last (held out)

For every transaction of the history, the account's state right after it: transaction counts over
1 h / 1 day / 7 days, amount mean/std/max, the time of the transaction and the home location. Rows
are stamped 1 ms after their transaction, so a point-in-time join at a transaction's own time
sees the state *before* it, exactly what the online store holds when that transaction is scored.
Writes feature_repo/data/account_features.parquet (offline store), applies feature_repo's
definitions and materialises the latest state per account into the online store.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
REPO = HERE / "feature_repo"
DATA = HERE / "artifacts" / "data"


def definitions(repo: Path = REPO) -> ModuleType:
    spec = importlib.util.spec_from_file_location("fraud_definitions", repo / "definitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def account_features(txns: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """One row per transaction: the account's aggregates including it, stamped 1 ms later."""
    t = txns.sort_values(["account_id", "timestamp"], kind="stable").reset_index(drop=True)
    amounts = t.set_index("timestamp").groupby("account_id", sort=False)["amount"]
    out = pd.DataFrame({"account_id": t["account_id"].to_numpy()})
    for window, suffix in (("1h", "1h"), ("1D", "1d"), ("7D", "7d")):
        out[f"txn_count_{suffix}"] = amounts.rolling(window).count().to_numpy()
    out["amount_mean_1d"] = amounts.rolling("1D").mean().to_numpy()
    rolling7 = amounts.rolling("7D")
    out["amount_mean_7d"] = rolling7.mean().to_numpy()
    out["amount_std_7d"] = np.nan_to_num(rolling7.std().to_numpy())
    out["amount_max_7d"] = rolling7.max().to_numpy()
    homes = accounts.set_index("account_id").loc[out["account_id"]]
    out["home_lat"] = homes["home_lat"].to_numpy()
    out["home_lon"] = homes["home_lon"].to_numpy()
    floats = [c for c in out.columns if c != "account_id"]
    out[floats] = out[floats].astype(np.float32)
    out["last_txn_ts"] = t["timestamp"].astype("int64").to_numpy() / 1e9
    out["event_timestamp"] = t["timestamp"] + pd.Timedelta(milliseconds=1)
    return out


def history_end(txns: pd.DataFrame) -> pd.Timestamp:
    """Start of the last day: everything before is history, the last day is held out."""
    return txns["timestamp"].max().floor("D")


def run(data: Path = DATA, repo: Path = REPO) -> pd.Timestamp:
    from feast import FeatureStore

    txns = pd.read_parquet(data / "transactions.parquet")
    accounts = pd.read_parquet(data / "accounts.parquet")
    end = history_end(txns)
    start = time.perf_counter()
    rows = account_features(txns[txns["timestamp"] < end], accounts)
    (repo / "data").mkdir(exist_ok=True)
    rows.to_parquet(repo / "data" / "account_features.parquet", index=False)
    took = time.perf_counter() - start
    print(
        f"features: {len(rows):,} rows for {rows['account_id'].nunique():,} accounts "
        f"in {took:.1f} s"
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply(definitions(repo).OBJECTS)
    start = time.perf_counter()
    store.materialize(
        start_date=rows["event_timestamp"].min().to_pydatetime(), end_date=end.to_pydatetime()
    )
    took = time.perf_counter() - start
    print(f"features: materialised the state at {end} to the online store in {took:.1f} s")
    return end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    run(args.data, args.repo)


if __name__ == "__main__":
    main()
