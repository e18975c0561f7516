"""Stages around the churn scorer: a feature step (the vector both versions score) and the
decision. Inputs are float64 usage figures and an int64 plan code, as users send them."""

from __future__ import annotations

import numpy as np


def features(usage: np.ndarray, plan: np.ndarray) -> dict[str, np.ndarray]:
    vector = np.concatenate([usage.astype(np.float32), (plan % 5).astype(np.float32)], axis=1)
    return {"vector": vector}


def decide(logit: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    probability = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return {"probability": probability, "churn": probability > threshold}
