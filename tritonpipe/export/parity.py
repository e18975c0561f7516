"""Numeric parity between eager PyTorch and an exported artifact."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tritonpipe.export.manifest import OutputParity
from tritonpipe.tensors import Array

Runner = Callable[[dict[str, Array]], dict[str, Array]]


def parity_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """1, a prime (7) and the largest batch: catches both off-by-one and fixed-batch exports."""
    return tuple(sorted({1, min(7, max_batch_size), max_batch_size}))


def compare(
    expected: Array, actual: Array, *, atol: float, rtol: float
) -> tuple[float, float, bool]:
    """Return (max abs error, max relative error, passed). NaN or Inf anywhere fails."""
    if expected.shape != actual.shape:
        return float("inf"), float("inf"), False
    exp = expected.astype(np.float64)
    act = actual.astype(np.float64)
    finite = bool(np.isfinite(exp).all() and np.isfinite(act).all())
    if not finite:
        return float("nan"), float("nan"), False
    diff = np.abs(exp - act)
    max_abs = float(diff.max(initial=0.0))
    scale = np.abs(exp)
    nonzero = scale > 0
    max_rel = float((diff[nonzero] / scale[nonzero]).max(initial=0.0))
    passed = bool((diff <= atol + rtol * scale).all())
    return max_abs, max_rel, passed


def measure(
    eager: Runner,
    exported: Runner,
    batches: Mapping[int, dict[str, Array]],
    output_names: Sequence[str],
    *,
    atol: float,
    rtol: float,
) -> dict[str, OutputParity]:
    """Run both on every batch and keep the worst error per output."""
    worst = {name: [0.0, 0.0, True] for name in output_names}
    for inputs in batches.values():
        want = eager(inputs)
        got = exported(inputs)
        for name in output_names:
            abs_err, rel_err, ok = compare(want[name], got[name], atol=atol, rtol=rtol)
            entry = worst[name]
            # NaN compares false with everything, so record it explicitly.
            entry[0] = abs_err if np.isnan(abs_err) else max(float(entry[0]), abs_err)
            entry[1] = rel_err if np.isnan(rel_err) else max(float(entry[1]), rel_err)
            entry[2] = bool(entry[2]) and ok
    sizes = tuple(batches)
    return {
        name: OutputParity(
            max_abs_error=float(w[0]),
            max_rel_error=float(w[1]),
            batch_sizes=sizes,
            passed=bool(w[2]),
        )
        for name, w in worst.items()
    }
