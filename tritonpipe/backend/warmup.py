"""A fused model's own warmup at load, for the models Triton's ``model_warmup`` cannot warm: one
that logs its predictions (Triton's warmup requests would be logged) or looks features up (its
online store may not be up yet). ``build`` writes the spec's samples into the version folder
(``warmup.json`` and ``warmup/``, tritonpipe.ensembles.warmup); ``initialize`` runs them through
the steps here, outside ``execute``: nothing is logged, shadow-scored, traced or counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

WARMUP_FOLDER = "warmup"
LOAD_WARMUP = "warmup.json"
Array = np.ndarray[Any, Any]


def load_warmup(version: Path, batched: bool) -> dict[str, Array] | None:
    """The rows ``build`` wrote, as one batch of one row (None: the model has none)."""
    path = version / LOAD_WARMUP
    if not path.is_file():
        return None
    arrays: dict[str, Array] = {}
    for name, entry in json.loads(path.read_text())["inputs"].items():
        file = version / WARMUP_FOLDER / entry["file"]
        if entry["file"].endswith(".bin"):
            row: Array = np.full(entry["shape"], file.read_bytes(), dtype=object)
        else:
            row = np.load(file, allow_pickle=False)
        arrays[name] = row[np.newaxis] if batched else row
    return arrays


def warm(runner: Any, version: Path, say: Callable[[str], None], count: int = 2) -> bool:
    """Run the samples through ``runner`` ``count`` times; False when the model has none. A
    lookup whose store cannot be read warms with its defaults (tritonpipe.features.runtime);
    a step that fails is logged through ``say``, and the model loads unwarmed."""
    arrays = load_warmup(version, runner.batched)
    if arrays is None:
        return False
    try:
        from tritonpipe.features.runtime import warming

        lookups: AbstractContextManager[None] = warming()
    except ImportError:  # no feature lookups installed: none in this model either
        lookups = nullcontext()
    hook, runner.on_step = runner.on_step, None
    try:
        with lookups:
            for _ in range(count):
                runner.run(arrays)
    except Exception as exc:
        detail = getattr(exc, "detail", "")
        say(f"warmup of '{runner.name}' failed, the model loads unwarmed: {exc} {detail}".strip())
        return False
    finally:
        runner.on_step = hook
        runner.take_timings()  # warmup is not served traffic: not in the step metrics
    return True
