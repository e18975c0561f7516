"""Post-processing of the fraud pipeline: probability and the decision at the version's threshold.

The feature vector and account id come in too, only so the prediction log records them."""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def decide(logit: Array, threshold: str | float, **_logged: Array) -> dict[str, Array]:
    probability = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    return {
        "probability": probability.astype(np.float32),
        "is_fraud": probability >= float(threshold),
    }
