"""Two versions side by side from the prediction logs.

Records of a shadow challenger carry ``shadow: true`` and the champion's request id, so each
pairs with the champion's record of the same request (same feature vector): agreement and score
deltas are measured on those pairs. A canary's records are not paired (each request went to one
version); they are compared per version. Quality per version needs labels keyed by request id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritonpipe.compare.quality import accuracy, auc, bootstrap_ci
from tritonpipe.errors import PredictionLogError


@dataclass(frozen=True, kw_only=True)
class VersionStats:
    version: str
    role: str  # "served" (answered requests) or "shadow"
    records: int
    decision_rate: float  # share of records whose decision is true
    score_mean: float
    # Served records: the time the pipeline took for the batch that answered each request
    # (lookups and steps, in the model); shadow records: the challenger's compute per request.
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    labelled: int = 0
    auc: tuple[float, float, float] | None = None  # (value, low, high), 95% bootstrap
    accuracy: tuple[float, float, float] | None = None


@dataclass(frozen=True, kw_only=True)
class Comparison:
    decision: str
    score: str
    champion: str
    challenger: str
    versions: list[VersionStats]
    pairs: int = 0  # requests scored by both (shadow)
    agreement: float | None = None  # share of pairs with the same decision
    delta_mean: float | None = None  # challenger - champion score, over pairs
    delta_abs_p50: float | None = None
    delta_abs_p99: float | None = None
    paired: Any = field(default=None, repr=False)  # DataFrame of the pairs (for plots)
    frame: Any = field(default=None, repr=False)

    def lines(self) -> list[str]:
        out = [f"champion {self.champion}, challenger {self.challenger}"]
        if self.pairs:
            out.append(
                f"shadow pairs: {self.pairs:,}  decision agreement {self.agreement:.2%}  "
                f"score delta mean {self.delta_mean:+.4f}, |delta| p50 {self.delta_abs_p50:.4f} "
                f"p99 {self.delta_abs_p99:.4f}"
            )
        for v in self.versions:
            text = (
                f"version {v.version} ({v.role}): {v.records:,} records, {self.decision} rate "
                f"{v.decision_rate:.2%}, mean {self.score} {v.score_mean:.4f}"
            )
            if v.latency_ms_p50 is not None and v.latency_ms_p99 is not None:
                what = "compute per request" if v.role == "shadow" else "latency"
                text += f", {what} p50 {v.latency_ms_p50:.2f} ms p99 {v.latency_ms_p99:.2f} ms"
            if v.auc is not None and v.accuracy is not None:
                text += (
                    f"; {v.labelled:,} labelled: AUC {v.auc[0]:.4f} [{v.auc[1]:.4f}, "
                    f"{v.auc[2]:.4f}], accuracy {v.accuracy[0]:.4f} [{v.accuracy[1]:.4f}, "
                    f"{v.accuracy[2]:.4f}] (95% bootstrap)"
                )
            out.append(text)
        return out


def _pick(frame: Any, given: str | None, kinds: str, what: str) -> str:
    outputs = [c for c in frame.columns if c.startswith("output_")]
    if given is not None:
        column = given if given.startswith("output_") else f"output_{given}"
        if column not in frame:
            raise PredictionLogError(
                f"no output '{given}' in the logs (outputs: {[c[7:] for c in outputs]})"
            )
        return column
    for column in outputs:
        if frame[column].dropna().map(type).isin([bool] if kinds == "b" else [float]).all():
            return str(column)
    raise PredictionLogError(
        f"no {what} output found in the logs (outputs: {[c[7:] for c in outputs]}); "
        f"name it with --{what}"
    )


def is_shadow(frame: Any) -> Any:
    """Boolean mask of a shadow's records (``shadow: true``; absent or null elsewhere)."""
    if "shadow" not in frame:
        return np.zeros(len(frame), dtype=bool)
    return frame["shadow"].map(lambda v: isinstance(v, (bool, np.bool_)) and bool(v)).to_numpy()


def _roles(frame: Any) -> Any:
    return np.where(is_shadow(frame), "shadow", "served")


def compare_logs(
    frame: Any,
    *,
    decision: str | None = None,
    score: str | None = None,
    champion: str | None = None,
    labels: Any = None,
    resamples: int = 1000,
) -> Comparison:
    """Compare the two versions in ``frame`` (``read_logs``); ``labels`` from ``read_labels``."""
    if frame.empty:
        raise PredictionLogError("the prediction logs are empty: nothing to compare")
    frame = frame.copy()
    frame["role"] = _roles(frame)
    frame["model_version"] = frame["model_version"].astype(str)
    frame["request_id"] = frame["request_id"].astype(str)
    decision_col = _pick(frame, decision, "b", "decision")
    score_col = _pick(frame, score, "f", "score")
    served = frame[frame["role"] == "served"]
    versions = list(dict.fromkeys(frame["model_version"]))
    if champion is None:
        counts = served["model_version"].value_counts()
        champion = str(counts.index[0]) if len(counts) else versions[0]
    others = [v for v in versions if v != champion]
    if champion not in versions or not others:
        raise PredictionLogError(
            f"the logs hold versions {versions}: need the champion ({champion}) and one other"
        )
    challenger = others[0]
    frame = frame[frame["model_version"].isin([champion, challenger])]
    if labels is not None:
        frame = frame.merge(labels, on="request_id", how="left")
    stats = []
    for (version, role), group in frame.groupby(["model_version", "role"], sort=False):
        decided = group[decision_col].astype(bool).to_numpy()
        scores = group[score_col].astype(float).to_numpy()
        p50 = p99 = None
        if "latency_ms" in group and group["latency_ms"].notna().any():
            known = group["latency_ms"].dropna().astype(float).to_numpy()
            p50, p99 = (float(v) for v in np.percentile(known, [50, 99]))
        extra: dict[str, Any] = {}
        if labels is not None:
            known = group["label"].notna().to_numpy()
            y = group["label"].to_numpy()[known].astype(int)
            extra = {
                "labelled": int(known.sum()),
                "auc": bootstrap_ci(auc, y, scores[known], resamples=resamples),
                "accuracy": bootstrap_ci(accuracy, y, decided[known], resamples=resamples),
            }
        stats.append(
            VersionStats(
                version=str(version),
                role=str(role),
                records=len(group),
                decision_rate=float(decided.mean()),
                score_mean=float(scores.mean()),
                latency_ms_p50=p50,
                latency_ms_p99=p99,
                **extra,
            )  # fmt: skip
        )
    keys = ["request_id", "row"] if "row" in frame else ["request_id"]
    base = frame[(frame["model_version"] == champion) & (frame["role"] == "served")]
    shadow = frame[(frame["model_version"] == challenger) & (frame["role"] == "shadow")]
    paired = base[[*keys, decision_col, score_col]].merge(
        shadow[[*keys, decision_col, score_col]], on=keys, suffixes=("_champion", "_challenger")
    )
    result: dict[str, Any] = {}
    if len(paired):
        same = paired[f"{decision_col}_champion"].astype(bool) == paired[
            f"{decision_col}_challenger"
        ].astype(bool)
        delta = (
            paired[f"{score_col}_challenger"].astype(float)
            - paired[f"{score_col}_champion"].astype(float)
        ).to_numpy()
        result = {
            "pairs": len(paired),
            "agreement": float(same.mean()),
            "delta_mean": float(delta.mean()),
            "delta_abs_p50": float(np.percentile(np.abs(delta), 50)),
            "delta_abs_p99": float(np.percentile(np.abs(delta), 99)),
        }
    return Comparison(
        decision=decision_col[7:], score=score_col[7:], champion=champion,
        challenger=challenger, versions=stats, paired=paired, frame=frame, **result,
    )  # fmt: skip
