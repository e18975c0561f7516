"""The cross-mode property on the Spark engine: Spark starts a JVM (about a minute), so it runs
one job per signature on one generated batch, the records of a few examples drawn by the same
strategy as ``test_every_mode`` (deterministic: ``derandomize``), against the in-process
reference. Same verdicts, same reasons (the rejects file), bit-equal outputs (Parquet: each
record is its own unit, so batch composition is the same). ``make test`` runs the signature
with a binary output and BOOL input, ``make test-long`` the others; ``HYPOTHESIS_PROFILE=thorough``
draws more examples into each batch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.integration.contract import batch_mode
from tests.integration.contract.conftest import SIGNATURES, Signature
from tests.integration.contract.modes import check_verdicts, contract_of, in_process, records
from tritonpipe.pipeline import Pipeline

EXAMPLES = 40 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 4


def _drawn(signature: Signature) -> list[dict[str, Any]]:
    """The records of ``EXAMPLES`` generated examples, as one batch."""
    drawn: list[dict[str, Any]] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=records(signature))
    def draw(batch: list[dict[str, Any]]) -> None:
        drawn.extend(dict(r, id=f"{len(drawn) + i}-{r['id']}") if r.get("id") else r
                     for i, r in enumerate(batch))  # fmt: skip

    draw()
    return drawn


# The default run scores the signature with Spark's own conversions (BOOL as tinyint, a binary
# output as hex) and leaves the others to ``make test-long``: each job costs tens of seconds.
CASES = [
    pytest.param(s, id=s.name, marks=() if s.binary else (pytest.mark.long,)) for s in SIGNATURES
]


@pytest.mark.slow
@pytest.mark.parametrize("signature", CASES)
def test_spark_engine_gives_the_same_verdicts_reasons_and_outputs(
    signature: Signature, contract_spec: Path, spark: Any, tmp_path: Path
) -> None:
    from tritonpipe.batch.spark import run_spark

    batch = _drawn(signature)
    contract = contract_of(signature)
    pipeline = Pipeline.load(contract_spec, signature.name, threads=1)
    expected = in_process(pipeline, contract, batch_mode.as_rows(signature, batch))
    assert {v for v, _ in expected} == {"ok", "refused"}, expected  # both kinds are compared
    source = batch_mode.write_records(signature, batch, tmp_path / "in")
    output = {"type": "parquet", "path": str(tmp_path / "out")}
    config = batch_mode.job_config(contract_spec, signature, source, output, tmp_path / "rejects")
    summary = run_spark(config, spark=spark)
    assert summary.rows + summary.rejected == len(batch)
    seen = batch_mode.read_verdicts(config, contract, len(batch), output)
    check_verdicts("spark", batch, expected, seen)
