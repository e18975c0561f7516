"""Help text as a user sees it through a pipe: nothing cut, no rich markup or emoji codes."""

from __future__ import annotations

import subprocess
import sys


def _help(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tritonpipe.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},  # no COLUMNS, no terminal
    )
    return result.stdout


def test_option_names_are_not_cut_when_stdout_is_a_pipe() -> None:
    text = _help("serve")
    assert "--model-control-mode" in text and "--protect-inference" in text
    assert "…" not in text and "..." not in text.replace("{repository}...", "")
    assert ".tritonpipe/logs/tritonserver-PORT.log" in text


def test_command_summaries_are_whole() -> None:
    for command in ((), ("perf",)):
        listing = _help(*command).split("Commands:")[1]
        assert "..." not in listing and "…" not in listing, listing


def test_colons_and_brackets_are_shown_as_written() -> None:
    profile = " ".join(_help("perf", "profile").split())
    assert "start:end:step of requests in flight" in profile and "🔚" not in profile
    infer = " ".join(_help("infer").split())
    assert "[batch, *dims] (a batch of rows) or [*dims] (one row)" in infer


def test_export_help_states_the_integer_sample_range() -> None:
    text = " ".join(_help("export").split())
    assert (
        "without it, integers are drawn from [0, num_embeddings) of the model's smallest nn.Embedding, or [0, 10) when it has none"
        in text
    )
