"""Quality per version against labels: a small labels reader and a bootstrap interval.

The labels source here is a Parquet file (or folder) keyed by request id; when the monitoring
package's labels join lands, ``read_labels`` is the one function to replace by it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.errors import PredictionLogError


def read_labels(path: Path, *, id_column: str = "request_id", label_column: str = "label") -> Any:
    """The labels as a DataFrame (``request_id``, ``label``) with labels 0/1 (bools, 0/1, or
    strings where "1"/"true"/"fraud"-like positives are not guessed: give 0/1 or bools)."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise PredictionLogError(f"{path}: cannot read the labels ({exc})") from None
    missing = [c for c in (id_column, label_column) if c not in frame]
    if missing:
        raise PredictionLogError(
            f"{path}: labels need columns {missing} (it has {list(frame.columns)}); "
            "choose them with --label-id and --label-column"
        )
    labels = frame[[id_column, label_column]].rename(
        columns={id_column: "request_id", label_column: "label"}
    )
    labels["request_id"] = labels["request_id"].astype(str)
    values = labels["label"]
    if values.isna().any():
        bad = labels.loc[values.isna(), "request_id"].iloc[0]
        raise PredictionLogError(f"{path}: label of request {bad!r} is null")
    try:
        labels["label"] = values.astype(float).astype(int)
    except (TypeError, ValueError):
        raise PredictionLogError(
            f"{path}: column '{label_column}' must hold 0/1 or booleans "
            f"(it holds e.g. {values.iloc[0]!r})"
        ) from None
    return labels.drop_duplicates("request_id", keep="last")


def auc(labels: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties halved); NaN with one class only."""
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=float)
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = starts + (counts - 1) / 2 + 1
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_ci(
    metric: Callable[[np.ndarray[Any, Any], np.ndarray[Any, Any]], float],
    labels: np.ndarray[Any, Any],
    values: np.ndarray[Any, Any],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(metric, low, high): the percentile bootstrap interval over rows resampled with
    replacement."""
    point = metric(labels, values)
    rng = np.random.default_rng(seed)
    n = len(labels)
    draws = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        value = metric(labels[idx], values[idx])
        if not np.isnan(value):
            draws.append(value)
    if not draws:
        return point, float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return point, float(low), float(high)


def accuracy(labels: np.ndarray[Any, Any], decisions: np.ndarray[Any, Any]) -> float:
    return float(np.mean(labels == decisions)) if len(labels) else float("nan")
