"""Live quality of one window once labels are joined: ROC AUC, precision and recall at the
decision threshold, calibration (expected calibration error over equal-width bins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
CALIBRATION_BINS = 10


@dataclass(frozen=True, kw_only=True)
class Quality:
    rows: int  # labelled rows in the window
    positives: int
    roc_auc: float  # NaN when the window holds one class only
    precision: float
    recall: float
    calibration_error: float
    mean_score: float
    positive_rate: float


def roc_auc(labels: Array, scores: Array) -> float:
    """Area under the ROC curve by the rank-sum formula (ties get their mean rank)."""
    from scipy.stats import rankdata

    pos = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration_error(labels: Array, scores: Array, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: the row-weighted gap between mean score and positive rate."""
    scores = np.asarray(scores, dtype=np.float64)
    which = np.clip((scores * bins).astype(np.int64), 0, bins - 1)
    mean_score = np.bincount(which, scores, minlength=bins)
    positives = np.bincount(which, np.asarray(labels, dtype=np.float64), minlength=bins)
    return float(np.abs(mean_score - positives).sum() / max(len(scores), 1))


def quality(labels: Array, scores: Array, threshold: float) -> Quality:
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    predicted = s >= threshold
    tp = int((predicted & y).sum())
    return Quality(
        rows=len(y),
        positives=int(y.sum()),
        roc_auc=roc_auc(y, s),
        precision=tp / int(predicted.sum()) if predicted.any() else float("nan"),
        recall=tp / int(y.sum()) if y.any() else float("nan"),
        calibration_error=calibration_error(y, s) if len(y) else float("nan"),
        mean_score=float(s.mean()) if len(s) else float("nan"),
        positive_rate=float(y.mean()) if len(y) else float("nan"),
    )
