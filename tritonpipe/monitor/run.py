"""One monitoring pass: prediction logs x reference profile -> per-window drift (every feature
and the prediction), volume, and quality where labels are joined."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tritonpipe.errors import MonitorError
from tritonpipe.monitor.drift import ColumnDrift, Thresholds, column_drift
from tritonpipe.monitor.logs import feature_matrix, log_column, prediction_vector
from tritonpipe.monitor.profile import PREDICTION, Profile
from tritonpipe.monitor.quality import Quality, quality
from tritonpipe.monitor.windows import Window, windows

DEFAULT = Thresholds()


@dataclass(kw_only=True)
class WindowResult:
    window: Window
    rows: int
    columns: list[ColumnDrift]
    quality: Quality | None = None

    @property
    def drifted(self) -> list[str]:
        return [c.feature for c in self.columns if c.drift]


@dataclass(kw_only=True)
class Result:
    model: str
    version: str
    profile: Profile
    windows: list[WindowResult] = field(default_factory=list)
    thresholds: Thresholds = DEFAULT

    @property
    def drift(self) -> bool:
        return any(w.drifted for w in self.windows)

    def streaks(self) -> dict[str, int]:
        """Per column, how many windows in a row drifted, counted back from the latest: what
        the "drift for N windows" alert reads. A window too small for a verdict (under
        ``min_rows``, such as the hour that just began) neither breaks nor extends a streak."""
        out: dict[str, int] = {}
        for i, name in enumerate(c.feature for c in self.windows[-1].columns):
            judged = [w.columns[i].drift for w in self.windows
                      if w.columns[i].rows >= self.thresholds.min_rows]  # fmt: skip
            held = next((k for k, d in enumerate(reversed(judged)) if not d), len(judged))
            out[name] = held
        return out

    def table(self) -> Any:
        """One row per (window, column): psi, p_value, drift, null and out-of-range rates."""
        import pandas as pd

        rows = [
            {"window": w.window.label, "rows": w.rows, **{k: v for k, v in asdict(c).items()
                                                         if k != "fractions"}}
            for w in self.windows for c in w.columns
        ]  # fmt: skip
        return pd.DataFrame(rows)

    def quality_table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [{"window": w.window.label, **asdict(w.quality)} for w in self.windows if w.quality]
        )


def monitor(
    frame: Any,
    profile: Profile,
    *,
    every: str = "1d",
    prediction: str = "output_probability",
    thresholds: Thresholds = DEFAULT,
    threshold: float | None = None,
) -> Result:
    """Drift per window of ``frame`` (records from the predlog readers); when ``frame`` has a
    ``label`` column (see :func:`tritonpipe.monitor.labels.join_labels`), quality too."""
    if not len(frame):
        raise MonitorError("no prediction-log records to monitor")
    vector = [f for f in profile.features if f.column is None]
    matrix = feature_matrix(frame, len(vector)) if vector else np.empty((len(frame), 0))
    place = {id(f): i for i, f in enumerate(vector)}
    values = {
        id(f): matrix[:, place[id(f)]] if f.column is None else log_column(frame, f.column)
        for f in profile.features
    }
    scores = prediction_vector(frame, prediction) if profile.prediction else None
    labels = frame["label"].to_numpy(dtype=np.float64) if "label" in frame else None
    cut = threshold if threshold is not None else profile.threshold
    first = frame.iloc[0]
    result = Result(
        model=str(first.get("model", "")),
        version=str(first.get("model_version", "")),
        profile=profile,
        thresholds=thresholds,
    )
    for w in windows(frame, every):
        part = slice(w.begin, w.stop)
        columns = [column_drift(ref, values[id(ref)][part], thresholds) for ref in profile.features]
        if scores is not None and profile.prediction is not None:
            columns.append(column_drift(profile.prediction, scores[part], thresholds))
        q = None
        if labels is not None and scores is not None:
            known = ~np.isnan(labels[part])
            if known.any():
                q = quality(labels[part][known], scores[part][known], 0.5 if cut is None else cut)
        result.windows.append(WindowResult(window=w, rows=w.stop - w.begin, columns=columns,
                                           quality=q))  # fmt: skip
    return result


__all__ = ["PREDICTION", "Result", "WindowResult", "monitor"]
