"""Generate readings, train the scorer (seconds) and export it to ONNX beside the pipeline.

    python examples/sensors/build.py [--out DIR]   # -> DIR/pipeline.yaml runnable (default here)

``build(folder)`` copies the example into ``folder`` (unless it is this folder), trains on
generated readings and exports ``artifacts/export`` there; tests call it on a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
FILES = ("pipeline.yaml", "stages.py", "model.py", "generate.py", "build.py")


def _load(name: str) -> Any:
    """This example's module ``name`` (loaded by path: digits has a stages.py and model.py too)."""
    spec = importlib.util.spec_from_file_location(f"sensors_example_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _features(frame: Any, params: dict[str, Any]) -> np.ndarray:
    stages = _load("stages")
    READINGS, prepare = stages.READINGS, stages.prepare
    columns = {n: np.asarray(frame[n], dtype=np.float32).reshape(-1, 1) for n in READINGS}
    kinds = np.asarray([s.encode() for s in frame["sensor_type"]], dtype=object).reshape(-1, 1)
    return prepare(sensor_type=kinds, **params, **columns)["features"]


def build(folder: Path = HERE, rows: int = 4000, epochs: int = 60) -> Path:
    """Train and export into ``folder``; returns its pipeline.yaml."""
    folder = folder.resolve()
    if folder != HERE:
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy(HERE / name, folder / name)
    readings = _load("generate").readings
    SensorScorer = _load("model").SensorScorer

    spec = yaml.safe_load((folder / "pipeline.yaml").read_text())
    params = spec["stages"]["prepare"]["parameters"]
    frame = readings(rows, seed=1)
    x = torch.from_numpy(_features(frame, params))
    y = torch.from_numpy((frame["truth"] == "alert").to_numpy(np.float32)).reshape(-1, 1)
    torch.manual_seed(0)
    model = SensorScorer()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(epochs):  # full batch: a few hundred ms
        optimiser.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
    artifacts = folder / "artifacts"
    artifacts.mkdir(exist_ok=True)
    weights = artifacts / "weights.pt"
    torch.save(model.state_dict(), weights)

    from tritonpipe.export import export
    from tritonpipe.tensors import parse_input_spec

    (artifacts / "factory.py").write_text(
        "import importlib.util\nfrom pathlib import Path\n\n"
        "_spec = importlib.util.spec_from_file_location(\n"
        f"    'sensors_model', {str(folder / 'model.py')!r}\n)\n"
        "_model = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_model)\n\n\n"
        f"def trained():\n    return _model.trained(Path({str(weights)!r}))\n"
    )
    export(
        f"{artifacts / 'factory.py'}:trained",
        [parse_input_spec("features:FP32:9")],
        artifacts / "export",
        formats=("onnx",),
        max_batch_size=256,
        output_names=["logit"],
        exporter="legacy",
    )
    return folder / "pipeline.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    print(f"==> sensors pipeline ready: {build(args.out)}")


if __name__ == "__main__":
    main()
