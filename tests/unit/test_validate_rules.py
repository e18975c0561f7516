"""`tritonpipe validate` on hand-written repositories that Triton refuses to load (each rule is
held against the real server in tests/integration/test_ensemble_rules.py)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.assets.ensemble_rules import BROKEN, write_repository
from tritonpipe.cli.main import app


def test_validate_cli_refuses_an_unused_ensemble_tensor(tmp_path: Path) -> None:
    write_repository(tmp_path / "repo")
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "repo")])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert (
        "unused_output/config.pbtxt: ensemble_scheduling.step[0].output_map: tensor 'b' "
        "(model 'two' output 'p') is read by no step and is not an ensemble output" in output
    )
    assert "(Triton: ensemble tensor 'b' is unused in ensemble 'unused_output')" in output
    for name, (_, _, words) in BROKEN.items():
        assert f"{name}/config.pbtxt" in output and words in output, name
    assert "chain/config.pbtxt" not in output and "mixed_batching/config.pbtxt" not in output
