"""`tritonpipe infer` with .npy/.json files: rows with or without a batch dimension, files of
different shapes as separate requests, and unreadable files as clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tritonpipe.cli.main import app
from tritonpipe.server import TritonServer


def _infer(server: TritonServer, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["infer", *args, "--url", server.http_url])
    return result.exit_code, result.stdout, result.stderr


def test_token_files_of_different_lengths_go_as_separate_requests(
    server: TritonServer, tmp_path: Path
) -> None:
    short, long = tmp_path / "short.npy", tmp_path / "long.npy"
    np.save(short, np.array([1, 2, 3], np.int64))  # one row, no batch dimension
    np.save(long, np.array([[1, 2, 3, 4, 5]], np.int64))  # one row, with it
    code, out, err = _infer(server, "token_sum", f"tokens={short}", f"tokens={long}")
    assert code == 0, err
    assert json.loads(out) == [{"total": [[6]]}, {"total": [[15]]}]
    assert "sent 2 requests" in err


def test_files_of_one_shape_join_into_one_batch(server: TritonServer, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("[1, 2]")
    b.write_text("[[3, 4], [5, 6]]")
    code, out, err = _infer(server, "token_sum", str(a), str(b))
    assert code == 0, err
    assert json.loads(out) == {"total": [[3], [7], [11]]}


def test_bad_files_are_clear_errors(server: TritonServer, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy")
    code, _, err = _infer(server, "token_sum", f"tokens={garbage}")
    assert code == 1
    assert f"input 'tokens': {garbage} cannot be read as a .npy array" in err
    assert "Traceback" not in err
    deep = tmp_path / "deep.npy"
    np.save(deep, np.zeros((1, 2, 3), np.int64))
    code, _, err = _infer(server, "token_sum", f"tokens={deep}")
    assert code == 1
    assert "holds shape [1, 2, 3]; model input 'tokens' takes [batch, -1] or [-1]" in err
    words = tmp_path / "words.json"
    words.write_text('["a", "b"]')
    code, _, err = _infer(server, "token_sum", f"tokens={words}")
    assert code == 1 and "cannot be read as JSON INT64 numbers" in err


def test_infer_help_says_what_a_file_holds() -> None:
    result = CliRunner().invoke(app, ["infer", "--help"], terminal_width=200)
    text = " ".join(result.stdout.split())
    assert "[batch, *dims] (a batch of rows) or [*dims] (one row)" in text
    assert "go as separate requests" in text
