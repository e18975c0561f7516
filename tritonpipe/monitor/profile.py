"""A reference profile: the training data's per-feature distribution and the prediction's.

Numeric features keep decile bin edges (PSI), a sorted sample (the KS test), the null rate and
the observed range; categorical features keep their category frequencies. A feature is read from
its place in the logged feature vector, or, when it has a ``column``, from that log column (a
request field the model does not take, such as a merchant category). Saved as JSON beside a
registry version (``monitor/profile.json``) when the model is registered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.errors import MonitorError

Array = np.ndarray[Any, Any]
PREDICTION = "prediction"
BINS = 10
SAMPLE = 5000


@dataclass(kw_only=True)
class FeatureProfile:
    name: str
    kind: str  # "numeric" or "categorical"
    rows: int
    null_rate: float
    edges: list[float] = field(default_factory=list)  # inner bin edges (numeric)
    fractions: list[float] = field(default_factory=list)  # per bin, or per category
    categories: list[str] = field(default_factory=list)
    sample: list[float] = field(default_factory=list)  # sorted (numeric)
    low: float | None = None
    high: float | None = None
    column: str | None = None  # the log column holding it; None: its place in the feature vector


@dataclass(kw_only=True)
class Profile:
    features: list[FeatureProfile]
    prediction: FeatureProfile | None = None
    threshold: float | None = None

    def feature(self, name: str) -> FeatureProfile:
        for f in self.features:
            if f.name == name:
                return f
        raise MonitorError(f"profile has no feature {name!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Profile:
        data = json.loads(text)
        pred = data.get("prediction")
        return cls(
            features=[FeatureProfile(**f) for f in data["features"]],
            prediction=FeatureProfile(**pred) if pred else None,
            threshold=data.get("threshold"),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Profile:
        if not path.is_file():
            raise MonitorError(f"{path}: no such reference profile")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            raise MonitorError(f"{path}: not a reference profile ({exc})") from None


def profile_column(name: str, values: Array, *, categorical: bool = False) -> FeatureProfile:
    """The profile of one column (numeric unless ``categorical`` or of strings/bools)."""
    values = np.asarray(values)
    rows = len(values)
    if categorical or values.dtype.kind in "OUSb":
        text = values.astype(str)
        nulls = np.isin(text, ["None", "nan", ""])
        cats, counts = np.unique(text[~nulls], return_counts=True)
        total = max(counts.sum(), 1)
        return FeatureProfile(
            name=name,
            kind="categorical",
            rows=rows,
            null_rate=float(nulls.mean()) if rows else 0.0,
            categories=[str(c) for c in cats],
            fractions=(counts / total).tolist(),
        )
    numbers = values.astype(np.float64)
    finite = numbers[np.isfinite(numbers)]
    if not len(finite):
        raise MonitorError(f"feature {name!r}: no finite values to profile")
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    rng = np.random.default_rng(0)
    sample = finite if len(finite) <= SAMPLE else rng.choice(finite, SAMPLE, replace=False)
    return FeatureProfile(
        name=name,
        kind="numeric",
        rows=rows,
        null_rate=float(1 - len(finite) / rows),
        edges=edges.tolist(),
        fractions=(counts / len(finite)).tolist(),
        sample=np.sort(sample).tolist(),
        low=float(finite.min()),
        high=float(finite.max()),
    )


def build_profile(
    features: Array,
    names: list[str],
    predictions: Array | None = None,
    *,
    categorical: tuple[str, ...] = (),
    threshold: float | None = None,
    columns: Mapping[str, Array] | None = None,
) -> Profile:
    """A profile from a [rows, len(names)] feature matrix (the serving feature code's output)
    and the model's predictions on the same rows; ``columns`` adds features read from log
    columns of those names (string or ``categorical`` ones are profiled as categories)."""
    matrix = np.asarray(features)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise MonitorError(
            f"features: expected [rows, {len(names)}] for {len(names)} names, got {matrix.shape}"
        )
    extra = []
    for name, values in (columns or {}).items():
        if len(values) != len(matrix):
            raise MonitorError(
                f"column {name!r}: {len(values)} values for {len(matrix)} feature rows"
            )
        extra.append(profile_column(name, np.asarray(values), categorical=name in categorical))
        extra[-1].column = name
    return Profile(
        features=[
            profile_column(n, matrix[:, i], categorical=n in categorical)
            for i, n in enumerate(names)
        ]
        + extra,
        prediction=None if predictions is None else profile_column(PREDICTION, predictions),
        threshold=threshold,
    )
