"""The runtime's value checks (what Triton's Python models and the in-process runner run before
any step): NaN/Inf where an input does not take them and values outside an input's declared
range are refused as the caller's fault, worded as the records contract words them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tritonpipe.backend.runtime import Decl, Runner, StepFailed, refusal
from tritonpipe.pipeline.plans import from_spec
from tritonpipe.records import Reasons

STAGE = """
def pick(cat, level):
    return {"y": level * cat}
"""


def _plan(folder: Path, cat: dict[str, Any], level: dict[str, Any]) -> dict[str, Any]:
    (folder / "stages.py").write_text(STAGE)
    spec = {
        "stages": {
            "pick": {
                "function": "stages.py:pick",
                "inputs": [
                    {"name": "cat", "dtype": "INT64", "shape": [1], **cat},
                    {"name": "level", "dtype": "FP32", "shape": [1], **level},
                ],
                "outputs": [{"name": "y", "dtype": "FP32", "shape": [1]}],
            }
        }
    }
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return from_spec(folder / "pipeline.yaml", "pick")


def _request(cat: int, level: float) -> dict[str, np.ndarray]:
    return {"cat": np.array([[cat]], np.int64), "level": np.array([[level]], np.float32)}


def test_the_runtime_takes_its_rules_from_the_plans_contract(tmp_path: Path) -> None:
    runner = Runner(_plan(tmp_path, {"range": [0, 49]}, {"allow_nan": True}), tmp_path)
    cat, level = runner.inputs
    assert (cat.low, cat.high, cat.allow_nan) == (0, 49, False)
    assert (level.low, level.high, level.allow_nan) == (None, None, True)


@pytest.mark.parametrize(
    ("cat", "level", "reason"),
    [
        (-1, 1.0, Reasons.outside("cat", -1, 0, 49)),
        (50, 1.0, Reasons.outside("cat", 50, 0, 49)),
        (3, float("nan"), Reasons.not_finite("level", float("nan"))),
        (3, float("-inf"), Reasons.not_finite("level", float("-inf"))),
    ],
)
def test_a_refused_value_fails_its_request_alone_before_the_stage_runs(
    tmp_path: Path, cat: int, level: float, reason: str
) -> None:
    runner = Runner(_plan(tmp_path, {"range": [0, 49]}, {}), tmp_path)
    results = runner.run_requests([_request(1, 2.0), _request(cat, level), _request(49, 0.5)])
    assert isinstance(results[1], StepFailed) and results[1].invalid
    assert str(results[1]) == reason  # the contract's own text, e.g. input 'cat': 50 is outside
    assert [r["y"].tolist() for r in (results[0], results[2])] == [[[2.0]], [[24.5]]]
    # The two good requests ran merged, once; the refused one never ran.
    assert runner.take_timings()[0][1:3] == (1, 2)
    with pytest.raises(StepFailed, match="input 'cat'|input 'level'"):
        runner.run(_request(cat, level))


def test_allow_nan_lets_nan_through(tmp_path: Path) -> None:
    runner = Runner(_plan(tmp_path, {}, {"allow_nan": True}), tmp_path)
    out = runner.run(_request(60, float("nan")))
    assert np.isnan(out["y"]).all()


def test_checks_skip_what_they_do_not_apply_to() -> None:
    decls = [Decl("t", "t", "BYTES", (1,)), Decl("n", "n", "INT32", (1,), low=0, high=3)]
    arrays = {"t": np.array([[b"x"]], object), "n": np.array([[0], [3]], np.int32)}
    assert refusal(decls, arrays) is None
    four = {**arrays, "n": np.array([[4]], np.int32)}
    assert refusal(decls, four) == "input 'n': 4 is outside [0, 3]"


@pytest.mark.parametrize("value", ["fan", "fän-ü", "x" * 60, ""])
def test_an_unknown_category_is_worded_as_the_contract_words_it(value: str) -> None:
    decl = Decl.parse(
        {"name": "kind", "dtype": "BYTES", "shape": [1]},
        {"categories": {"kind": ["motor", "pump", "fän"]}},
    )
    known = np.array([["fän".encode()], [b"pump"]], dtype=object)
    assert refusal([decl], {"kind": known}) is None
    arrays = {"kind": np.array([[b"motor"], [value.encode()]], dtype=object)}
    assert refusal([decl], arrays) == Reasons.unknown_category("kind", value)
