"""Pre- and post-processing for the sensors pipeline: plain functions on batched numpy arrays.

Run inside Triton's Python backend and in-process; imports only numpy. A ValueError is the
caller's fault (invalid input).
"""

from __future__ import annotations

import numpy as np

READINGS = ("temperature", "vibration", "pressure", "current", "rpm", "humidity")


def prepare(
    *,
    sensor_type: np.ndarray,
    means: list[float],
    stds: list[float],
    vocabulary: list[str],
    **readings: np.ndarray,
) -> dict[str, np.ndarray]:
    """Six FP32 [batch, 1] readings and BYTES [batch, 1] sensor_type -> FP32 [batch, 6 + types]:
    the readings standardised with ``means``/``stds``, then sensor_type one-hot over
    ``vocabulary``."""
    raw = np.concatenate([readings[name].reshape(-1, 1) for name in READINGS], axis=1)
    scaled = (raw - np.asarray(means, dtype=np.float32)) / np.asarray(stds, dtype=np.float32)
    kinds = np.asarray([bytes(v).decode() for v in sensor_type.reshape(-1)], dtype=object)
    onehot = kinds[:, None] == np.asarray(vocabulary, dtype=object)[None, :]
    unknown = ~onehot.any(axis=1)
    if unknown.any():
        first = int(np.flatnonzero(unknown)[0])
        raise ValueError(f"input 'sensor_type': unknown category {kinds[first]!r}")
    return {"features": np.concatenate([scaled, onehot], axis=1).astype(np.float32)}


def label(logit: np.ndarray, threshold: float, labels: dict[str, str]) -> dict[str, np.ndarray]:
    """FP32 [batch, 1] logits -> the score (sigmoid) and the text label: ``labels["true"]`` at or
    above ``threshold``, ``labels["false"]`` below."""
    score = (1.0 / (1.0 + np.exp(-logit.astype(np.float64)))).astype(np.float32)
    names = np.asarray([labels["false"].encode(), labels["true"].encode()], dtype=object)
    return {"alert": names[(score >= threshold).astype(np.int64)], "score": score}
