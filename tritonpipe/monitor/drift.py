"""Drift of one window against a reference column: PSI, plus KS (numeric) or chi-square
(categorical) from scipy. A column drifts when PSI is above ``psi`` AND the test's p-value is
below ``p_value``: PSI alone flags tiny windows, the test alone flags trivial shifts in big ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonpipe.monitor.profile import FeatureProfile

Array = np.ndarray[Any, Any]
EPS = 1e-4


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    psi: float = 0.2
    p_value: float = 0.01
    min_rows: int = 100  # fewer rows in a window: no verdict


@dataclass(frozen=True, kw_only=True)
class ColumnDrift:
    feature: str
    rows: int
    psi: float
    statistic: float
    p_value: float
    null_rate: float
    out_of_range: float
    drift: bool
    fractions: tuple[float, ...]  # the window's, on the reference bins or categories


def psi(reference: Array, current: Array) -> float:
    """Population stability index of two distributions over the same bins."""
    ref = np.clip(np.asarray(reference, dtype=np.float64), EPS, None)
    cur = np.clip(np.asarray(current, dtype=np.float64), EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def column_drift(ref: FeatureProfile, values: Array, limits: Thresholds) -> ColumnDrift:
    """Drift of ``values`` (one window of one column) against its reference profile."""
    from scipy import stats

    rows = len(values)
    if ref.kind == "categorical":
        text = np.asarray(values).astype(str)
        nulls = np.isin(text, ["None", "nan", ""])
        known = np.asarray(ref.categories)
        index = {c: i for i, c in enumerate(known)}
        cats, counts = np.unique(text[~nulls], return_counts=True)
        observed = np.zeros(len(known) + 1)  # the last bin: categories training never saw
        for c, n in zip(cats, counts, strict=True):  # one step per distinct category
            observed[index.get(str(c), len(known))] += n
        total = observed.sum()
        expected = np.append(np.asarray(ref.fractions), 0.0)
        fractions = observed / max(total, 1.0)
        unseen = fractions[-1]
        smoothed = (expected + EPS) / (expected + EPS).sum() * total
        # A window of nulls only has no category to test (its null rate says what happened).
        statistic, p = stats.chisquare(observed, smoothed) if total > 0 else (0.0, 1.0)
        null_rate, out_of_range = float(nulls.mean()) if rows else 0.0, float(unseen)
    else:
        numbers = np.asarray(values, dtype=np.float64)
        finite = numbers[np.isfinite(numbers)]
        bins = np.searchsorted(np.asarray(ref.edges), finite, side="right")
        counts = np.bincount(bins, minlength=len(ref.edges) + 1)
        fractions = counts / max(len(finite), 1)
        expected = np.asarray(ref.fractions)
        if len(finite):
            result = stats.ks_2samp(np.asarray(ref.sample), finite)
            statistic, p = float(result.statistic), float(result.pvalue)
        else:
            statistic, p = 0.0, 1.0
        null_rate = float(1 - len(finite) / rows) if rows else 0.0
        outside = (finite < (ref.low or 0.0)) | (finite > (ref.high or 0.0))
        out_of_range = float(outside.mean()) if len(finite) else 0.0
    score = psi(expected, fractions[: len(expected)] if ref.kind != "categorical" else fractions)
    drift = rows >= limits.min_rows and score > limits.psi and float(p) < limits.p_value
    return ColumnDrift(
        feature=ref.name,
        rows=rows,
        psi=score,
        statistic=float(statistic),
        p_value=float(p),
        null_rate=null_rate,
        out_of_range=out_of_range,
        drift=bool(drift),
        fractions=tuple(float(f) for f in fractions),
    )
