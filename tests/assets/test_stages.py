"""Stages served only in integration tests."""

from __future__ import annotations

import time

import numpy as np


def slow_echo(x: np.ndarray, seconds: float = 0.0) -> dict[str, np.ndarray]:
    """Returns x after sleeping: keeps requests in flight for shutdown tests."""
    time.sleep(seconds)
    return {"y": x}


def strict(x: np.ndarray) -> dict[str, np.ndarray]:
    """Rejects any batch holding a negative value: one bad request in a merged batch."""
    if (x < 0).any():
        raise ValueError("input 'x' holds negative values")
    return {"y": x * 2}


def token_sum(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Sums a variable-length row of tokens: requests of different lengths for `infer`."""
    return {"total": tokens.sum(axis=1, keepdims=True)}
