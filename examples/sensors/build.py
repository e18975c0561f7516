"""Generate readings, train the scorer (seconds) and export it to ONNX beside the pipeline.

    python examples/sensors/build.py [--out DIR]   # -> DIR/pipeline.yaml runnable (default here)

``build(folder)`` copies the example into ``folder`` (unless it is this folder), trains on
generated readings and exports ``artifacts/export`` there; tests call it on a temporary folder.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
FILES = ("pipeline.yaml", "stages.py", "model.py", "generate.py", "build.py")


def _features(frame: object, params: dict[str, list]) -> np.ndarray:  # type: ignore[type-arg]
    sys.path.insert(0, str(HERE))
    from stages import READINGS, prepare

    columns = {name: np.asarray(frame[name], dtype=np.float32).reshape(-1, 1) for name in READINGS}  # type: ignore[index]
    kinds = np.asarray([s.encode() for s in frame["sensor_type"]], dtype=object).reshape(-1, 1)  # type: ignore[index]
    return prepare(sensor_type=kinds, **params, **columns)["features"]


def build(folder: Path = HERE, rows: int = 4000, epochs: int = 60) -> Path:
    """Train and export into ``folder``; returns its pipeline.yaml."""
    folder = folder.resolve()
    if folder != HERE:
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy(HERE / name, folder / name)
    sys.path.insert(0, str(HERE))
    from generate import readings
    from model import SensorScorer

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
        "from pathlib import Path\nimport sys\n"
        f"sys.path.insert(0, {str(folder)!r})\n"
        "from model import trained as _trained\n\n\n"
        f"def trained():\n    return _trained(Path({str(weights)!r}))\n"
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
