"""Pre- and post-processing for the digits pipeline: plain functions on batched numpy arrays.

Copied into the model repository and run inside Triton's Python backend; imports only numpy and
Pillow. A ValueError is the caller's fault and reaches the client as an invalid-argument error.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

SIZE = 8
# Naming the formats skips Pillow's probe of every registered plugin (a third of a decode here).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# Mean and spread of the training pixels after scaling to [0, 1] (see train.py).
MEAN, STD = 0.3, 0.38


def decode(data: bytes) -> np.ndarray:
    """One encoded image (PNG, JPEG, ...) -> 8x8 grayscale floats in [0, 1]."""
    with Image.open(io.BytesIO(data), formats=FORMATS) as image:
        gray = image if image.mode == "L" else image.convert("L")
        if gray.size != (SIZE, SIZE):
            gray = gray.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        return np.asarray(gray, dtype=np.float32) / 255.0


def preprocess(image: np.ndarray) -> dict[str, np.ndarray]:
    """image: BYTES [batch, 1] of encoded images -> pixels: FP32 [batch, 1, 8, 8], normalised."""
    items = image.reshape(len(image))
    pixels = np.empty((len(items), 1, SIZE, SIZE), dtype=np.float32)
    for i, item in enumerate(items):
        try:
            pixels[i, 0] = decode(bytes(item))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            reason = type(exc).__name__
            raise ValueError(
                f"input 'image' item {i} is not a decodable image ({reason})"
            ) from None
    return {"pixels": (pixels - MEAN) / STD}


def postprocess(logits: np.ndarray, k: int = 3) -> dict[str, np.ndarray]:
    """logits: FP32 [batch, 10] -> the top-k labels (INT64) and their probabilities (FP32)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return {"labels": top.astype(np.int64), "probabilities": np.take_along_axis(probs, top, axis=1)}
