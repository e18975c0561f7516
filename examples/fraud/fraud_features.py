"""The fraud model's feature vector, defined once: training (after Feast's point-in-time join) and
serving (the generated lookup stage) both call :func:`feature_vector`, so they cannot drift.

Stored features come from the `account_stats` view (via the `fraud_v1` feature service); on-demand
features are computed here from the request (amount, merchant location, timestamp).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

REQUEST = ["amount", "merchant_lat", "merchant_lon", "timestamp"]
FEATURES = [
    "log_amount",
    "amount_ratio_7d",
    "amount_z_7d",
    "amount_ratio_max_7d",
    "log_count_1h",
    "log_count_1d",
    "log_count_7d",
    "count_ratio_1d_7d",
    "log_distance_km",
    "far_from_home",
    "hour_sin",
    "hour_cos",
    "log_secs_since_last",
]


def _col(values: Mapping[str, Array], name: str) -> Array:
    return np.asarray(values[name], dtype=np.float64).reshape(-1)


def distance_km(lat1: Array, lon1: Array, lat2: Array, lon2: Array) -> Array:
    """Great-circle distance (haversine)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(lon2 - lon1)
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def feature_vector(stored: Mapping[str, Array], request: Mapping[str, Array]) -> Array:
    """[rows, len(FEATURES)] float32 from the stored features and the request data."""
    amount = _col(request, "amount")
    mean7, std7 = _col(stored, "amount_mean_7d"), _col(stored, "amount_std_7d")
    count1h, count1d = _col(stored, "txn_count_1h"), _col(stored, "txn_count_1d")
    count7d = _col(stored, "txn_count_7d")
    dist = distance_km(
        _col(stored, "home_lat"),
        _col(stored, "home_lon"),
        _col(request, "merchant_lat"),
        _col(request, "merchant_lon"),
    )
    ts = _col(request, "timestamp")
    hour = (ts % 86_400.0) / 3600.0
    since = np.maximum(ts - _col(stored, "last_txn_ts"), 0.0)
    columns = [
        np.log1p(amount),
        amount / (mean7 + 1.0),
        (amount - mean7) / (std7 + 1.0),
        amount / (_col(stored, "amount_max_7d") + 1.0),
        np.log1p(count1h),
        np.log1p(count1d),
        np.log1p(count7d),
        count1d / (count7d / 7.0 + 1.0),
        np.log1p(dist),
        (dist > 300.0).astype(np.float64),
        np.sin(2 * np.pi * hour / 24.0),
        np.cos(2 * np.pi * hour / 24.0),
        np.log1p(since),
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def serving_inputs(stored: Mapping[str, Array], request: Mapping[str, Array]) -> dict[str, Array]:
    """The lookup stage's transform: the model input tensor `features`."""
    return {"features": feature_vector(stored, request)}
