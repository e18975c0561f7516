"""What the generated config and the runtime do, seen by a client: instance_group count runs
requests side by side; a stage that loses rows is refused, served and in-process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import ASSETS
from tritonpipe.client import Client
from tritonpipe.errors import ClientError, PipelineError
from tritonpipe.pipeline import Pipeline
from tritonpipe.server import TritonServer


def _elapsed_for_four(server: TritonServer, model: str) -> float:
    x = np.ones((1, 4), np.float32)
    with Client(server.http_url, retries=0, timeout_s=30) as client:
        client.infer(model, {"x": x})  # warm, and the config fetched
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda _: client.infer(model, {"x": x}), range(4)))
        elapsed = time.perf_counter() - started
    assert all(np.array_equal(o["y"], x) for o in outs)
    return elapsed


def test_instance_group_count_runs_requests_side_by_side(server: TritonServer) -> None:
    # slow_echo: 1 s per request, instance_groups [{count: 4}], no batching: four at once take
    # about 1 s, not 4 s.
    assert _elapsed_for_four(server, "slow_echo") < 2.5
    # sleepy: 20 ms, one instance: four at once take at least 4 x 20 ms, one after another.
    assert _elapsed_for_four(server, "sleepy") >= 0.08


def test_stage_that_loses_rows_is_refused_served(server: TritonServer) -> None:
    with Client(server.http_url, retries=0) as client:
        with pytest.raises(ClientError, match=r"has 2 rows for 3 input rows"):
            client.infer("drop_row", {"x": np.ones((3, 4), np.float32)})
        # A one-row request loses its only row: an empty answer, refused the same way.
        with pytest.raises(ClientError, match=r"has 0 rows for 1 input rows"):
            client.infer("drop_row", {"x": np.ones((1, 4), np.float32)})


def test_stage_that_loses_rows_is_refused_in_process() -> None:
    pipe = Pipeline.load(ASSETS / "test_pipeline.yaml", "drop_row")
    with pytest.raises(PipelineError, match=r"has 2 rows for 3 input rows"):
        pipe({"x": np.ones((3, 4), np.float32)})
