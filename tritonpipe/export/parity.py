"""Numeric parity between eager PyTorch and an exported artifact, over every shape it claims."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from tritonpipe.errors import ExportError
from tritonpipe.export.inputs import Case, ExportInput
from tritonpipe.export.manifest import OutputParity
from tritonpipe.tensors import Array

Runner = Callable[[dict[str, Array]], dict[str, Array]]
Result = TypeVar("Result")


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


def _error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}{'...' if len(text) > 400 else ''}"


def run_cases(
    what: str,
    run: Callable[[dict[str, Array]], Result],
    cases: Sequence[Case],
    arrays: Sequence[dict[str, Array]],
    inputs: Sequence[ExportInput],
) -> list[Result]:
    """Run ``run`` on every case; the first that raises ends the export with a message naming
    the input, the dim, the sizes that worked and the error (``what`` says who failed)."""
    samples = {i.spec.name: i.sample for i in inputs}
    worked: dict[tuple[str, int], list[int]] = {}
    results = []
    for case, feed in zip(cases, arrays, strict=True):
        try:
            results.append(run(feed))
        except Exception as exc:  # the model's or the runtime's own error, reported as found
            if case.varied is None:
                raise ExportError(
                    f"{what} fails at batch size {case.batch} with the sample shapes "
                    f"{case.to_dict()}: {_error_text(exc)}"
                ) from exc
            name, dim, size = case.varied
            ok = [samples[name][dim - 1], *worked.get((name, dim), [])]
            raise ExportError(
                f"{what}: input '{name}' dim {dim} is declared dynamic but does not really vary; "
                f"sizes that worked: {sorted(set(ok) - {size})}; at size {size} "
                f"(batch {case.batch}): {_error_text(exc)}"
            ) from exc
        if case.varied is not None:
            name, dim, size = case.varied
            worked.setdefault((name, dim), []).append(size)
    return results


def measure(
    expected: Sequence[dict[str, Array]],
    actual: Sequence[dict[str, Array]],
    cases: Sequence[Case],
    output_names: Sequence[str],
    *,
    atol: float,
    rtol: float,
) -> dict[str, OutputParity]:
    """Keep the worst error per output over all cases, and the first case that failed."""
    worst = {name: [0.0, 0.0] for name in output_names}
    failed: dict[str, str] = {}
    for case, want, got in zip(cases, expected, actual, strict=True):
        for name in output_names:
            abs_err, rel_err, ok = compare(want[name], got[name], atol=atol, rtol=rtol)
            entry = worst[name]
            # NaN compares false with everything, so record it explicitly.
            entry[0] = abs_err if np.isnan(abs_err) else max(entry[0], abs_err)
            entry[1] = rel_err if np.isnan(rel_err) else max(entry[1], rel_err)
            if not ok and name not in failed:
                failed[name] = ", ".join(f"{n}{list(s)}" for n, s in case.shapes.items())
    sizes = tuple(sorted({c.batch for c in cases}))
    return {
        name: OutputParity(
            max_abs_error=float(w[0]),
            max_rel_error=float(w[1]),
            batch_sizes=sizes,
            passed=name not in failed,
            failed_at=failed.get(name),
        )
        for name, w in worst.items()
    }
