"""Stream job configs and event decoding: errors name the file, field or input."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import numpy as np
import pytest

from tritonpipe.errors import SpecError
from tritonpipe.stream import Message, decode, load_config
from tritonpipe.stream.worker import Poison

BASE = """
pipeline: pipeline.yaml
name: score
bus: {type: redis, stream: in, output: out, dead_letter: dead}
inputs:
  x: {field: x}
  tag: {field: tag, dtype: BYTES, shape: [1]}
"""


def _config(tmp_path: Path, text: str = BASE, **overrides: object):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return load_config(path, **overrides)


def test_defaults_and_paths(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.bus.type == "redis" and config.bus.group == "tritonpipe"
    assert config.pipeline_path() == tmp_path / "pipeline.yaml"
    assert config.batch.max_events == 32 and config.max_attempts == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE.replace("type: redis", "type: kafka"), "bus"),
        (
            BASE.replace("dead_letter: dead", "dead_leter: dead"),
            "bus.redis.dead_leter: Extra inputs",
        ),
        (
            BASE.replace("dtype: BYTES", "dtype: STRING"),
            "inputs.tag.dtype: unknown dtype 'STRING'",
        ),
        (BASE + "batch: {max_events: 0}\n", "batch.max_events: Input should be greater than 0"),
        ("- a list\n", "a stream job config is a mapping"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError, match="job.yaml") as info:
        _config(tmp_path, text)
    assert message in str(info.value) and "Value error" not in str(info.value)


def test_decode_json_and_msgpack(tmp_path: Path) -> None:
    config = _config(tmp_path)
    event = {"id": "e1", "x": [1.5, 2.0], "tag": "a", "ts": 100.0}
    got = decode(config, Message(id="1-0", body=json.dumps(event).encode()))
    assert got.id == "e1" and got.time == 100.0
    np.testing.assert_array_equal(got.inputs["x"], np.array([[1.5, 2.0]], dtype=np.float32))
    assert got.inputs["tag"].dtype == object and got.inputs["tag"].tolist() == [[b"a"]]
    packed = _config(tmp_path, format="msgpack")
    again = decode(packed, Message(id="2-0", body=msgpack.packb({**event, "id": 7, "x": [1.0]})))
    assert again.id == "7" and again.inputs["x"].shape == (1, 1)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"x": 1.0, "tag": "b"}, "id 'id': missing"),
        ({"id": None, "x": 1.0, "tag": "b"}, "id 'id': missing"),
        ({"id": "", "x": 1.0, "tag": "b"}, "id 'id': missing"),
    ],
)
def test_an_event_without_its_id_is_refused(tmp_path: Path, event: dict, reason: str) -> None:
    """Not filed under the bus's entry id, which a republished event does not keep."""
    packed = _config(tmp_path, format="msgpack")
    with pytest.raises(Poison, match=reason):
        decode(packed, Message(id="3-0", body=msgpack.packb(event)))


def test_a_message_the_bus_refused_is_poison_with_its_reason(tmp_path: Path) -> None:
    message = Message(id="1-0", body=b"", refused="no payload: the entry has no field 'data'")
    with pytest.raises(Poison, match="no payload: the entry has no field 'data'"):
        decode(_config(tmp_path), message)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{nope", "payload is not json: JSONDecodeError"),
        (b"[1, 2]", "record: not an object (list)"),
        (b'{"id": "a", "tag": "a"}', "input 'x': missing"),
        (b'{"id": "a", "x": ["abc"], "tag": "a"}', "input 'x': 'abc' is not FP32"),
        (b'{"id": "a", "x": null, "tag": "a"}', "input 'x': null"),
        (b'{"id": "a", "x": [1], "tag": 1234567}', "input 'tag': 1234567 is not a string"),
    ],
)
def test_poison_reasons(tmp_path: Path, body: bytes, reason: str) -> None:
    with pytest.raises(Poison, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode(_config(tmp_path), Message(id="1-0", body=body))


HOOKS = """
calls = []


def record(events, *, tag):
    calls.append((list(events), tag))


def broken(events):
    raise KeyError("history.parquet")
"""


def test_before_score_hook_is_called_once_empty_at_start_up(tmp_path: Path) -> None:
    from tritonpipe.stream.runner import _hook

    (tmp_path / "hooks.py").write_text(HOOKS)
    config = _config(tmp_path, before_score="hooks.py:record", parameters={"tag": "t"})
    hook = _hook(config)
    assert hook is not None
    hook([{"x": 1}])
    calls = hook.func.__globals__["calls"]  # type: ignore[attr-defined]
    assert calls == [([], "t"), ([{"x": 1}], "t")]
    with pytest.raises(SpecError, match=r"before_score 'hooks.py:broken' failed at start-up.*"
                       r"KeyError.*history.parquet"):  # fmt: skip
        _hook(_config(tmp_path, before_score="hooks.py:broken"))
