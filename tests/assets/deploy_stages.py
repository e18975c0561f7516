"""Stages of the small pipeline the replica and rollout tests serve."""

from __future__ import annotations

import numpy as np


def scale(x: np.ndarray, factor: float = 1.0) -> dict[str, np.ndarray]:
    return {"z": (x * factor).astype(np.float32)}


def shift(z: np.ndarray, offset: float = 0.0) -> dict[str, np.ndarray]:
    if offset < 0:
        raise ValueError("offset must not be negative")
    return {"y": (z + offset).astype(np.float32)}
