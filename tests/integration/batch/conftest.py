"""A small scoring pipeline (numpy stages, no model files) and Parquet inputs for batch jobs.

``scorer`` takes no parameters; ``flag`` takes a threshold and a list of weights, which the spec
sets away from their defaults (tests check their effect in every engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

STAGES = '''
import numpy as np


def score(amount, history):
    """A score from a scalar and a vector; a negative amount is the caller's fault."""
    if (amount < 0).any():
        raise ValueError("amount must be >= 0")
    total = amount * 2 + history.sum(axis=1, keepdims=True)
    return {"score": total.astype(np.float32), "parts": history * 2}


def flag(amount, history, threshold=1000.0, weights=(1.0, 1.0, 1.0)):
    """An alert above ``threshold``; a risk weighting the history by ``weights``."""
    risk = history @ np.asarray(weights, dtype=np.float64)
    return {"alert": amount > threshold, "risk": risk.reshape(-1, 1)}
'''

FLAG_PARAMETERS = {"threshold": 50.0, "weights": [0.5, -2.0, 0.0]}

SPEC = {
    "stages": {
        "scorer": {
            "function": "stages.py:score",
            "inputs": [
                {"name": "amount", "dtype": "FP32", "shape": [1]},
                {"name": "history", "dtype": "FP64", "shape": [3]},
            ],
            "outputs": [
                {"name": "score", "dtype": "FP32", "shape": [1]},
                {"name": "parts", "dtype": "FP64", "shape": [3]},
            ],
            "max_batch_size": 64,
        },
        "flag": {
            "function": "stages.py:flag",
            "parameters": FLAG_PARAMETERS,
            "inputs": [
                {"name": "amount", "dtype": "FP32", "shape": [1]},
                {"name": "history", "dtype": "FP64", "shape": [3]},
            ],
            "outputs": [
                {"name": "alert", "dtype": "BOOL", "shape": [1]},
                {"name": "risk", "dtype": "FP64", "shape": [1]},
            ],
            "max_batch_size": 64,
        },
    }
}


def make_rows(n: int, seed: int = 0, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "txn_id": np.arange(start, start + n, dtype=np.int64),
            "day": (np.arange(start, start + n) % 3).astype(np.int64),
            "amt": rng.uniform(0, 100, n).astype(np.float32),
            "history": list(rng.normal(size=(n, 3))),
        }
    )


@pytest.fixture(scope="session")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batch_pipeline")
    (root / "stages.py").write_text(STAGES)
    (root / "pipeline.yaml").write_text(yaml.safe_dump(SPEC))
    return root / "pipeline.yaml"


def job(pipeline: Path, source: Path, output: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "pipeline": str(pipeline),
        "model": "scorer",
        "source": {"type": "parquet", "path": str(source), "rows_per_unit": 100},
        "output": output,
        "key": ["txn_id", "day"],
        "columns": {"amount": "amt"},
        "batch_size": 32,
        **extra,
    }
