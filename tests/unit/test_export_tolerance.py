"""Parity tolerances at their boundary: an export whose outputs differ from eager by a known
amount just inside and just outside atol, then rtol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonpipe.errors import ParityError
from tritonpipe.export import export
from tritonpipe.export.parity import compare
from tritonpipe.tensors import parse_input_spec

MODELS = Path(__file__).resolve().parent.parent / "assets" / "models.py"


@pytest.mark.parametrize(
    ("which", "atol", "rtol", "passes"),
    [
        ("atol_inside", 1e-3, 0.0, True),
        ("atol_outside", 1e-3, 0.0, False),
        ("rtol_inside", 0.0, 1e-2, True),
        ("rtol_outside", 0.0, 1e-2, False),
    ],
)
def test_export_tolerance_boundaries(
    tmp_path: Path, which: str, atol: float, rtol: float, passes: bool
) -> None:
    def run() -> bool:
        manifest = export(
            f"{MODELS}:offset_{which}",
            [parse_input_spec("x:FP32:3")],
            tmp_path,
            formats=["torchscript"],
            max_batch_size=2,
            atol=atol,
            rtol=rtol,
        )
        return bool(manifest.parity["torchscript"]["output0"].passed)

    if passes:
        assert run()
    else:
        with pytest.raises(ParityError, match="output0"):
            run()


def test_compare_at_the_boundary() -> None:
    base = np.full(4, 100.0)
    assert compare(base, base + 0.9, atol=0, rtol=1e-2)[2]
    assert not compare(base, base + 1.1, atol=0, rtol=1e-2)[2]
    assert compare(base, base + 1.1, atol=0.2, rtol=1e-2)[2]  # atol and rtol add up
    assert not compare(base, base + 1.3, atol=0.2, rtol=1e-2)[2]
    assert compare(base, base - 0.9, atol=0, rtol=1e-2)[2]  # both directions
    assert not compare(base, base - 1.1, atol=0, rtol=1e-2)[2]
    # rtol scales with the expected value, not the actual one
    assert not compare(np.array([1.0]), np.array([1.9]), atol=0, rtol=0.5)[2]
    max_abs, max_rel, _ = compare(np.array([2.0, 0.0]), np.array([2.5, 0.1]), atol=1, rtol=0)
    assert max_abs == pytest.approx(0.5) and max_rel == pytest.approx(0.25)
