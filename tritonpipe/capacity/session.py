"""A tritonserver for sweeps and plans: built from a pipeline spec (or given a repository),
started with explicit model control so candidates load without a restart."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tritonpipe.errors import PerfError, SpecError
from tritonpipe.server import ServerOptions, TritonServer


def is_spec(source: Path) -> bool:
    return source.is_file() and source.suffix in (".yaml", ".yml")


@contextlib.contextmanager
def serving(source: Path, model: str, log: Path | None = None) -> Iterator[TritonServer]:
    """Serve ``model`` from ``source`` (a spec, built into a temporary repository, or a
    repository folder); the server stops when the block ends."""
    with tempfile.TemporaryDirectory(prefix="tritonpipe-sweep-") as tmp:
        if is_spec(source):
            from tritonpipe.ensembles import build_repository

            repository = Path(tmp) / "repo"
            build_repository(source, repository)
        elif source.is_dir():
            repository = source
        else:
            raise SpecError(f"{source}: neither a pipeline spec (.yaml) nor a model repository")
        models = sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())
        if model not in models:
            raise PerfError(
                f"model '{model}' is not in {source} (models: {', '.join(models) or 'none'})"
            )
        options = ServerOptions(
            repository=repository, model_control="explicit", models=(model,), exit_timeout_s=5
        )
        with TritonServer(options, log_path=log or Path(tmp) / "server.log") as server:
            yield server


def png_input_data(heldout: Path, folder: Path, count: int = 64) -> Path:
    """perf_analyzer-format input data of held-out PNGs (the digits pipeline's input)."""
    from tritonpipe.perf.input_data import to_json

    files = sorted(heldout.glob("*.png"))[:count]
    if not files:
        raise PerfError(f"{heldout}: no PNG files (run `make digits` first)")
    data = folder / "pngs.json"
    samples = [{"image": np.array([f.read_bytes()], dtype=object)} for f in files]
    data.write_text(json.dumps(to_json(samples)))
    return data
