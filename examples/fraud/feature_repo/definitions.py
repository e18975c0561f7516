"""Feast objects of the fraud example: the account entity, its windowed-aggregate view (filled from
the offline Parquet by materialisation, and pushed fresh by the stream workers through its push
source) and the feature service the model is trained and served with."""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float32, Float64

account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64)

account_source = FileSource(
    name="account_features_source",
    path="data/account_features.parquet",
    timestamp_field="event_timestamp",
)

# examples/fraud/fresh_features.py pushes each account's state after a transaction here; the view
# reads the pushed rows online and keeps account_source as its batch (offline) source.
account_push = PushSource(name="account_stats_push", batch_source=account_source)

FLOAT_FEATURES = [
    "txn_count_1h",
    "txn_count_1d",
    "txn_count_7d",
    "amount_mean_1d",
    "amount_mean_7d",
    "amount_std_7d",
    "amount_max_7d",
    "home_lat",
    "home_lon",
]

account_stats = FeatureView(
    name="account_stats",
    entities=[account],
    ttl=timedelta(days=60),
    schema=[Field(name=n, dtype=Float32) for n in FLOAT_FEATURES]
    + [Field(name="last_txn_ts", dtype=Float64)],
    source=account_push,
    online=True,
)

fraud_v1 = FeatureService(name="fraud_v1", features=[account_stats])

OBJECTS = [account, account_source, account_push, account_stats, fraud_v1]
