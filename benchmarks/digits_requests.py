"""The digits pipeline's requests that the serving benchmarks send: held-out PNGs, and the
Triton HTTP body for one of them (binary tensors, as wrk replays it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton_http

HELDOUT = Path(__file__).resolve().parents[1] / "examples" / "digits" / "artifacts" / "heldout"


def images(n: int) -> np.ndarray[Any, Any]:
    """``n`` held-out PNGs as an (n, 1) BYTES array, cycling through the files in name order."""
    files = sorted(HELDOUT.glob("*.png"))
    if not files:
        raise SystemExit(f"no held-out digits in {HELDOUT}: run `make digits` first")
    return np.array([[files[i % len(files)].read_bytes()] for i in range(n)], dtype=object)


def triton_request(png: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a Triton HTTP infer request for one PNG, asking for the labels
    and probabilities in binary."""
    tensor = triton_http.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[png]], dtype=object), binary_data=True)
    outputs = [
        triton_http.InferRequestedOutput(n, binary_data=True) for n in ("labels", "probabilities")
    ]
    body, json_size = triton_http.InferenceServerClient.generate_request_body([tensor], outputs)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return body, headers
