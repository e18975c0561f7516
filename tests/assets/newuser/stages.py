"""The new user's one stage: a score scaled by a parameter (default 1, the spec says 3)."""

from __future__ import annotations

import numpy as np


def scale(score: np.ndarray, factor: float = 1.0) -> dict[str, np.ndarray]:
    return {"scaled": (score * factor).astype(np.float32)}
