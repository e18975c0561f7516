"""Prediction-log records hold text outputs as strings and binary outputs as base64."""

from __future__ import annotations

import numpy as np

from tritonpipe.predlog.triton import _records


def test_text_and_binary_outputs_in_log_records() -> None:
    config = {
        "entity_keys": ["site"],
        "features": None,
        "pipeline": "sensors",
        "model": "scorer",
        "model_version": "1",
        "binary": ["blob"],
    }
    entry = {
        "request_id": "r1",
        "timestamp": 1.5,
        "inputs": {"site": np.array([[b"north"], [b"south"]], dtype=object)},
        "outputs": {
            "alert": np.array([[b"ok"], [b"\xff"]], dtype=object),
            "blob": np.array([[b"\x00\x01"], [b""]], dtype=object),
            "score": np.array([[0.25], [0.75]], dtype=np.float32),
        },
    }
    records = _records(config, entry)
    assert [(r["entity_site"], r["output_alert"], r["output_blob"]) for r in records] == [
        ("north", "ok", "AAE="),
        ("south", "\ufffd", ""),
    ]
    assert [r["output_score"] for r in records] == [0.25, 0.75]
