"""An ensemble's own `max_batch_size` from the spec, served: Triton runs a batch within it and
refuses a larger one at the ensemble, though every step takes 16 (tests/assets/capped_pipeline.yaml).
Unfused (Triton's ensemble scheduler over two models) and fused (one Python model) alike."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tritonpipe.server import TritonServer


def _infer(module: object, address: str, model: str, rows: int) -> np.ndarray:
    client = module.InferenceServerClient(address)  # type: ignore[attr-defined]
    try:
        x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
        tensor = module.InferInput("x", [rows, 4], "FP32")  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(x)
        result: np.ndarray = client.infer(model, [tensor]).as_numpy("y")
        return result
    finally:
        client.close()


@pytest.mark.parametrize("model", ["capped_steps", "capped"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_max_batch_size_is_enforced_by_the_server(
    server: TritonServer, model: str, protocol: str
) -> None:
    module, url = (
        (triton_http, server.http_url) if protocol == "http" else (triton_grpc, server.grpc_url)
    )
    address = url.split("://", 1)[1]
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    # Within the limit: served, and both steps ran in order (x * 2 then + 1).
    np.testing.assert_array_equal(_infer(module, address, model, 4), x * 2 + 1)
    with pytest.raises(InferenceServerException, match=f"batch-size must be <= 4 for '{model}'"):
        _infer(module, address, model, 5)


def test_config_the_server_loaded_says_4_and_its_steps_16(server: TritonServer) -> None:
    client = triton_http.InferenceServerClient(server.http_url.split("://", 1)[1])
    try:
        loaded = {
            name: client.get_model_config(name)["max_batch_size"]
            for name in ("capped_steps", "capped", "cap_double", "cap_shift")
        }
    finally:
        client.close()
    assert loaded == {"capped_steps": 4, "capped": 4, "cap_double": 16, "cap_shift": 16}
