"""Monitoring the fraud model: the reference profile stored at registration, the days to monitor
(normal ones, and one made to drift: amounts doubled and online shops grown), prediction logs
written by the real Parquet sink, and the labels (is_fraud) arriving three days after each
prediction, read back from a Feast feature view.

    python examples/fraud/monitoring.py     # make fraud-monitor

Features come from fraud_features.feature_vector, the function serving calls, over the account
state as of each transaction (a point-in-time as-of join of the feature pipeline's rows).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from feature_pipeline import account_features  # noqa: E402
from fraud_features import FEATURES, feature_vector  # noqa: E402
from generate import generate  # noqa: E402

from tritonpipe.monitor import build_profile  # noqa: E402
from tritonpipe.predlog import ParquetSink  # noqa: E402

OUT = HERE.parent.parent / "build" / "monitor" / "fraud"
LABEL_DELAY = pd.Timedelta(days=3)  # chargebacks arrive days later
# generate.py's merchant categories, by index: not a model input, logged beside the features.
CATEGORIES = [
    "grocery", "fuel", "restaurants", "travel", "electronics", "fashion", "online", "cash",
]  # fmt: skip


def served_features(txns: pd.DataFrame, accounts: pd.DataFrame) -> np.ndarray[Any, Any]:
    """The feature vector each transaction was scored with: the account state just before it."""
    state = account_features(txns, accounts).sort_values("event_timestamp")
    joined = pd.merge_asof(
        txns.sort_values("timestamp"), state.drop(columns="account_id").assign(
            account_id=state["account_id"].to_numpy()),
        left_on="timestamp", right_on="event_timestamp", by="account_id",
        allow_exact_matches=False,
    )  # fmt: skip
    # The home of a first transaction is known from the accounts table (the online store's).
    homes = accounts.set_index("account_id").loc[joined["account_id"]]
    for c in ("home_lat", "home_lon"):
        joined[c] = joined[c].fillna(pd.Series(homes[c].to_numpy(), index=joined.index))
    stored = {c: joined[c].fillna(0).to_numpy() for c in joined.columns if c not in txns}
    stored.update(home_lat=joined["home_lat"].to_numpy(), home_lon=joined["home_lon"].to_numpy())
    request = {c: joined[c].to_numpy() for c in ("amount", "merchant_lat", "merchant_lon")}
    request["timestamp"] = joined["timestamp"].astype("int64").to_numpy() / 1e9
    return feature_vector(stored, request)


class Scorer:
    """A logistic model over the feature vector (fitted on the reference days): quick to fit and
    enough to give the prediction a distribution to monitor."""

    def __init__(self, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> None:
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(max_iter=500).fit(x, y)

    def __call__(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(self.model.predict_proba(x)[:, 1])


def merchant_category(txns: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Each transaction's merchant category by name (the log column the monitor reads)."""
    return np.asarray(CATEGORIES)[txns["category"].to_numpy()]


def drifted(
    txns: pd.DataFrame,
    day: pd.Timestamp,
    amount_scale: float = 2.0,
    grown: str = "online",
    share: float = 0.3,
) -> pd.DataFrame:
    """``txns`` with the amounts of ``day`` scaled (a price change, a new currency...) and a
    ``share`` of its transactions moved to the merchant category ``grown`` (a new shop opens)."""
    out = txns.copy()
    on_day = (out["timestamp"] >= day) & (out["timestamp"] < day + pd.Timedelta(days=1))
    out.loc[on_day, "amount"] = out.loc[on_day, "amount"] * amount_scale
    rng = np.random.default_rng(11)
    moved = on_day.to_numpy() & (rng.random(len(out)) < share)
    out.loc[moved, "category"] = CATEGORIES.index(grown)
    return out


def write_logs(
    folder: Path, txns: pd.DataFrame, x: np.ndarray[Any, Any], probs: np.ndarray[Any, Any]
) -> None:
    """One prediction-log record per transaction, through the Parquet sink serving uses."""
    if folder.exists():  # a rerun replaces the day's logs rather than adding to them
        shutil.rmtree(folder)
    sink = ParquetSink(folder, roll_rows=50_000, roll_seconds=3600)
    seconds = txns["timestamp"].astype("int64").to_numpy() / 1e9
    base = {"pipeline": "fraud", "model": "fraud", "model_version": "1", "row": 0}
    records = [
        {**base, "request_id": f"t{t}", "timestamp": s, "entity_account_id": int(a),
         "merchant_category": str(c), "features": f, "output_probability": float(p),
         "output_is_fraud": bool(p >= 0.5)}
        for t, s, a, c, f, p in zip(txns["txn_id"], seconds, txns["account_id"],
                                    merchant_category(txns), x.tolist(), probs, strict=True)
    ]  # fmt: skip
    sink.write(records)
    sink.close()


def labels_for(txns: pd.DataFrame) -> pd.DataFrame:
    """Labels keyed by request id, each known LABEL_DELAY after its transaction."""
    return pd.DataFrame(
        {
            "request_id": "t" + txns["txn_id"].astype(str),
            "label": txns["is_fraud"].astype(int).to_numpy(),
            "label_time": txns["timestamp"] + LABEL_DELAY,
        }
    )


def scenario(
    out: Path, *, accounts: int = 3000, days: int = 21, reference_days: int = 7, seed: int = 7
) -> dict[str, Any]:
    """Generate, profile the reference days, write the normal and the drifted days' logs."""
    txns, acc = generate(accounts, days, seed=seed)
    start = txns["timestamp"].min().floor("D")
    warm = start + pd.Timedelta(days=7)  # 7-day aggregates are warmed up from here
    split = warm + pd.Timedelta(days=reference_days)
    x = served_features(txns, acc)
    order = txns.sort_values("timestamp").index  # served_features returns rows by time
    txns = txns.loc[order].reset_index(drop=True)
    ref = ((txns["timestamp"] >= warm) & (txns["timestamp"] < split)).to_numpy()
    scorer = Scorer(x[ref], txns["is_fraud"].to_numpy()[ref])
    probs = scorer(x)
    categories = {"merchant_category": merchant_category(txns[ref])}
    profile = build_profile(x[ref], FEATURES, probs[ref], threshold=0.5, columns=categories)
    profile.save(out / "profile.json")
    normal = (txns["timestamp"] >= split).to_numpy()
    write_logs(out / "normal", txns[normal], x[normal], probs[normal])
    day = split
    shifted = drifted(txns, day)
    xs = served_features(shifted, acc)
    on_day = (shifted["timestamp"] >= day) & (shifted["timestamp"] < day + pd.Timedelta(days=1))
    on_day = on_day.to_numpy()
    write_logs(out / "drifted", shifted[on_day], xs[on_day], scorer(xs[on_day]))
    labels_for(txns[normal]).to_parquet(out / "labels.parquet", index=False)
    return {"profile": profile, "txns": txns[normal].reset_index(drop=True), "day": day}


def labels_repo(out: Path, labels: pd.DataFrame) -> Path:
    """A Feast repository whose ``chargebacks`` view holds the labels, keyed by request id and
    stamped when each chargeback arrived (the labels source the late-label runs read)."""
    from datetime import timedelta

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Int64

    repo = out / "labels_repo"
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: fraud_labels\nprovider: local\nregistry: data/registry.db\n"
        "online_store: {type: sqlite, path: data/online.db}\noffline_store: {type: file}\n"
        "entity_key_serialization_version: 2\n"
    )
    labels.to_parquet(repo / "data" / "chargebacks.parquet", index=False)
    request = Entity(name="request", join_keys=["request_id"], value_type=ValueType.STRING)
    source = FileSource(path=str((repo / "data" / "chargebacks.parquet").resolve()),
                        timestamp_field="label_time")  # fmt: skip
    view = FeatureView(name="chargebacks", entities=[request], ttl=timedelta(0),
                       schema=[Field(name="label", dtype=Int64)], source=source)  # fmt: skip
    FeatureStore(repo_path=str(repo)).apply([request, view])
    return repo


class Transcript:
    """stdout that also keeps what was printed (the per-run verdict lines)."""

    def __init__(self, out: Any) -> None:
        self.out, self.lines = out, [""]

    def write(self, text: str) -> int:
        self.lines[-1] += text
        *done, rest = self.lines[-1].split("\n")
        self.lines[-1:] = [*done, rest]
        return int(self.out.write(text))

    def flush(self) -> None:
        self.out.flush()


def main() -> None:
    from tritonpipe.cli.main import app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    # Feast's SQLite online-store config warns about its own field names on import.
    warnings.filterwarnings("ignore", message='Field name "vector_', category=UserWarning)
    made = scenario(args.out)
    repo = labels_repo(args.out, pd.read_parquet(args.out / "labels.parquet"))
    profile = str(args.out / "profile.json")
    end = made["txns"]["timestamp"].max()  # monitored at the end of the last day
    labels = ["--labels", f"feast:{repo}#chargebacks", "--as-of", str(end)]
    runs = (
        ("normal days (as served)", "normal", [], "report-normal.html"),
        ("a day whose amounts doubled and online shops grew", "drifted", [], "report-drifted.html"),
        ("normal days, chargebacks arriving 3 days late (Feast view)", "normal", labels,
         "report.html"),
        ("the drifted day, chargebacks arriving 3 days late (Feast view)", "drifted", labels,
         "report-drifted-labels.html"),
    )  # fmt: skip
    transcript = Transcript(sys.stdout)
    verdicts = []
    with contextlib.redirect_stdout(transcript):  # type: ignore[type-var]
        for title, folder, extra, report in runs:
            print(f"\n== {title}")
            command = ["monitor", "run", str(args.out / folder), "--profile", profile]
            with contextlib.suppress(SystemExit):
                app([*command, "--report", str(args.out / report), *extra])
            verdicts.append(next(v for v in reversed(transcript.lines) if v.startswith("verdict")))
    normal, drift = verdicts[0].removeprefix("verdict: "), verdicts[1].removeprefix("verdict: ")
    labelled = sum("labelled)" in line for line in transcript.lines)
    print(f"\nfinal verdict: normal days: {normal}; drifted day: {drift}; "
          f"quality from late labels on {labelled} days; reports in {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
