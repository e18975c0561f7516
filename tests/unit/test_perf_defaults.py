"""perf profile's defaults on a user's model: random values within the input rules its config
publishes (``tritonpipe.contract``, the one set of input rules ``tritonpipe build`` writes), and
the metrics URL of the server `tritonpipe serve` started."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format

from tritonpipe.client.checks import ModelInfo
from tritonpipe.ensembles import build_repository
from tritonpipe.perf.input_data import synthetic
from tritonpipe.repository.config import parse_pbtxt
from tritonpipe.server import running
from tritonpipe.tensors import TensorSpec, parse_input_spec

NEWUSER = Path(__file__).resolve().parent.parent / "assets" / "newuser"


def _info(parameters: dict[str, object]) -> ModelInfo:
    return ModelInfo(
        name="m",
        max_batch_size=8,
        inputs=(
            TensorSpec(name="cat", dtype="INT64", shape=(3,)),
            TensorSpec(name="other", dtype="INT32", shape=(2,)),
            TensorSpec(name="level", dtype="FP32", shape=(4,)),
            TensorSpec(name="kind", dtype="BYTES", shape=(5,)),
        ),
        outputs=(),
        optional=frozenset(),
        config={"parameters": parameters},
    )


def _contract(options: object) -> dict[str, object]:
    text = options if isinstance(options, str) else json.dumps(options)
    return {"tritonpipe.contract": {"string_value": text}}


def test_random_values_come_from_the_published_contract() -> None:
    rules = {
        "ranges": {"cat": [5.0, 8.0], "level": [10.0, 12.0]},  # inclusive, as the contract's
        "allow_nan": [],
        "categories": {"kind": ["motor", "pump"]},
        "binary": [],
    }
    many = [synthetic(_info(_contract(rules)), "random", {}, seed=s)[0] for s in range(30)]
    cats = np.concatenate([s["cat"] for s in many])
    assert cats.min() == 5 and cats.max() == 8  # every id in [5, 8], the range's ends included
    levels = np.concatenate([s["level"] for s in many])
    assert levels.min() >= 10 and levels.max() <= 12 and levels.std() > 0.1
    assert {w for s in many for w in s["kind"].tolist()} == {b"motor", b"pump"}
    # Without a range, perf_analyzer's [0, 100); a parameter that does not parse is ignored.
    plain = np.concatenate(
        [synthetic(_info({}), "random", {}, seed=s)[0]["cat"] for s in range(30)]
    )
    assert plain.max() >= 50 and plain.min() >= 0
    for broken in ("{not json", '["a list"]', '{"ranges": {"cat": 5}}'):
        assert synthetic(_info(_contract(broken)), "random", {})[0]["cat"].max() < 100
    # The old parameter is not read any more: one set of input rules.
    old = {"tritonpipe.value_ranges": {"string_value": json.dumps({"cat": [5, 9]})}}
    ignored = [synthetic(_info(old), "random", {}, seed=s)[0]["cat"] for s in range(30)]
    assert np.concatenate(ignored).max() >= 50


def test_built_configs_publish_the_manifest_ranges_in_the_contract_only(tmp_path: Path) -> None:
    """A model exported with ``value_ranges`` (nn.Embedding(50, 4): cat in [0, 50)): the fused
    model and the unfused ensemble publish them in ``tritonpipe.contract``, and nothing else;
    perf's random ids drawn from the served config stay in [0, 49]."""
    from tritonpipe.export import export

    inputs = [parse_input_spec("num:FP32:12"), parse_input_spec("cat:INT64:3")]
    export(f"{NEWUSER / 'tabular.py'}:build", inputs, tmp_path / "tab",
           output_names=["score", "embedding"], formats=("onnx",))  # fmt: skip
    shutil.copy(NEWUSER / "stages.py", tmp_path / "stages.py")
    (tmp_path / "pipeline.yaml").write_text(
        "stages:\n"
        "  scale:\n"
        "    function: stages.py:scale\n"
        "    inputs: [{name: score, dtype: FP32, shape: [1]}]\n"
        "    outputs: [{name: scaled, dtype: FP32, shape: [1]}]\n"
        "models:\n"
        "  tab: {export: tab, format: onnx, max_batch_size: 8}\n"
        "ensembles:\n"
        "  scored: {steps: [tab, scale], outputs: [scaled, embedding]}\n"
    )
    for fuse, runtime in (("auto", None), ("none", "native")):
        repo = tmp_path / f"repo_{fuse}"
        build_repository(tmp_path / "pipeline.yaml", repo, fuse=fuse, runtime=runtime)
        texts = {p.parent.name: p.read_text() for p in repo.glob("*/config.pbtxt")}
        assert not [n for n, t in texts.items() if "value_ranges" in t], fuse
        config = json_format.MessageToDict(
            parse_pbtxt(texts["scored"]), preserving_proto_field_name=True
        )
        published = json.loads(config["parameters"]["tritonpipe.contract"]["string_value"])
        assert published["ranges"] == {"cat": [0.0, 49.0]}, fuse
        info = ModelInfo.from_config("scored", config)
        cats = np.concatenate([synthetic(info, "random", {}, seed=s)[0]["cat"] for s in range(20)])
        assert cats.min() == 0 and cats.max() == 49, fuse


def test_metrics_url_of_the_server_serve_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRITONPIPE_STATE", str(tmp_path))
    assert running.metrics_url_for("127.0.0.1:8000") is None
    running.record(
        "http://127.0.0.1:9100", "grpc://127.0.0.1:9101", "http://127.0.0.1:9102/metrics"
    )
    for address in (
        "127.0.0.1:9100",
        "localhost:9101",
        "grpc://127.0.0.1:9101",
        "http://localhost:9100",
    ):
        assert running.metrics_url_for(address) == "http://127.0.0.1:9102/metrics"
    assert running.metrics_url_for("127.0.0.1:9200") is None
    running.forget("http://127.0.0.1:9100")
    assert running.metrics_url_for("127.0.0.1:9100") is None
