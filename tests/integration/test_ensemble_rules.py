"""`validate` refuses every ensemble the real tritonserver refuses to load, and accepts the ones
it loads."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.assets.ensemble_rules import BROKEN, GOOD, MODELS, write_repository
from tritonpipe.errors import RepositoryError
from tritonpipe.repository import validate_repository
from tritonpipe.server import ServerOptions, TritonServer


@pytest.fixture(scope="module")
def rules_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    root = tmp_path_factory.mktemp("rules") / "repo"
    write_repository(root)
    options = ServerOptions(
        repository=root, model_control="explicit", models=tuple(MODELS), exit_timeout_s=2
    )
    with TritonServer(options, log_path=root.parent / "server.log", restart=False) as server:
        yield server


def _load(server: TritonServer, name: str) -> str:
    """'' when Triton loads the model, else its refusal (the answer and the log's reason)."""
    request = urllib.request.Request(
        f"{server.http_url}/v2/repository/models/{name}/load", data=b"", method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60):
            return ""
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read())["error"]
        reasons = [line for line in server.log_path.read_text().splitlines() if f"{name}" in line]
        return answer + "\n" + "\n".join(reasons)


def _validate_problems(root: Path) -> list[str]:
    with pytest.raises(RepositoryError) as info:
        validate_repository(root)
    return info.value.problems


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_validate_refuses_what_triton_refuses(rules_server: TritonServer, name: str) -> None:
    _, triton_words, validate_words = BROKEN[name]
    refusal = _load(rules_server, name)
    if triton_words:
        assert triton_words in refusal, refusal
    else:
        assert refusal == "", f"Triton now refuses {name}: {refusal}"
    mine = [p for p in _validate_problems(rules_server.options.repository) if f"/{name}/" in p]
    assert any(validate_words in p for p in mine), mine


@pytest.mark.parametrize("name", sorted(GOOD))
def test_validate_accepts_what_triton_loads(rules_server: TritonServer, name: str) -> None:
    assert _load(rules_server, name) == ""
    problems = _validate_problems(rules_server.options.repository)
    assert not [p for p in problems if f"/{name}/" in p]
