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


def buggy(x: np.ndarray) -> dict[str, np.ndarray]:
    """A stage with a bug: the reply names this file and line, the log holds the traceback."""
    scale = len(x) // len(x) - 1
    return {"y": x / (1 // scale)}


def lossy(x: np.ndarray, integers: bool = False) -> dict[str, np.ndarray]:
    """Returns float64: fine for an FP32 output, refused for an INT64 one (data would be lost)."""
    return {"y": x.astype(np.float64) + 0.5}


def token_sum(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Sums a variable-length row of tokens: requests of different lengths for `infer`."""
    return {"total": tokens.sum(axis=1, keepdims=True)}


def drop_row(x: np.ndarray) -> dict[str, np.ndarray]:
    """Loses the last row: the runtime must refuse an output with fewer rows than the input."""
    return {"y": x[:-1]}


def affine(x: np.ndarray, scale: float = 1.0, shift: float = 0.0) -> dict[str, np.ndarray]:
    """x * scale + shift: two of them chained show each step ran once, in order."""
    return {"y": (x * scale + shift).astype(np.float32)}
