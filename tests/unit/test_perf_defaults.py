"""perf profile's defaults on a user's model: random integers from the model's recorded value
ranges, and the metrics URL of the server `tritonpipe serve` started."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritonpipe.client.checks import ModelInfo
from tritonpipe.perf.input_data import synthetic
from tritonpipe.server import running
from tritonpipe.tensors import TensorSpec


def _info(parameters: dict[str, object]) -> ModelInfo:
    return ModelInfo(
        name="m",
        max_batch_size=8,
        inputs=(
            TensorSpec(name="cat", dtype="INT64", shape=(3,)),
            TensorSpec(name="other", dtype="INT32", shape=(2,)),
        ),
        outputs=(),
        optional=frozenset(),
        config={"parameters": parameters},
    )


def test_random_integers_come_from_the_recorded_ranges() -> None:
    ranges = {"tritonpipe.value_ranges": {"string_value": json.dumps({"cat": [5, 9]})}}
    sample = synthetic(_info(ranges), "random", {})[0]
    assert sample["cat"].min() >= 5 and sample["cat"].max() < 9
    # Without a range, perf_analyzer's [0, 100); a parameter that does not parse is ignored.
    many = np.concatenate([synthetic(_info({}), "random", {}, seed=s)[0]["cat"] for s in range(30)])
    assert many.max() >= 50 and many.min() >= 0
    broken = {"tritonpipe.value_ranges": {"string_value": "{not json"}}
    assert synthetic(_info(broken), "random", {})[0]["cat"].max() < 100


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
