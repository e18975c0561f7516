"""manifest.json: what an export folder holds, how it was made and how well it matches eager."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonpipe.errors import SpecError
from tritonpipe.tensors import TensorSpec

MANIFEST = "manifest.json"
# Format -> the file it is written to (and served from, in a Triton model version folder).
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt", "aoti": "model.pt2"}


@dataclass(frozen=True, kw_only=True)
class OutputParity:
    """Worst errors seen for one output of one format across the parity batch sizes."""

    max_abs_error: float
    max_rel_error: float
    batch_sizes: tuple[int, ...]
    passed: bool
    failed_at: str | None = None  # input shapes of the first case out of tolerance


@dataclass(kw_only=True)
class Manifest:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    opset: int | None
    torch_version: str
    factory: str
    atol: float
    rtol: float
    exporter: str = "legacy"  # dynamo: torch.export-based; legacy: tracing
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)  # format -> file, sha256..
    shapes: list[dict[str, list[int]]] = field(default_factory=list)  # every parity case's inputs
    value_ranges: dict[str, list[int]] = field(default_factory=dict)  # integer input -> [low, high)
    parity: dict[str, dict[str, OutputParity]] = field(default_factory=dict)  # format -> output

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "factory": self.factory,
            "torch_version": self.torch_version,
            "opset": self.opset,
            "exporter": self.exporter,
            "max_batch_size": self.max_batch_size,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "artifacts": self.artifacts,
            "tolerance": {"atol": self.atol, "rtol": self.rtol},
            "parity": {
                fmt: {
                    name: {
                        "max_abs_error": p.max_abs_error,
                        "max_rel_error": p.max_rel_error,
                        "batch_sizes": list(p.batch_sizes),
                        "passed": p.passed,
                    }
                    | ({"failed_at": p.failed_at} if p.failed_at else {})
                    for name, p in outputs.items()
                }
                for fmt, outputs in self.parity.items()
            },
            "parity_shapes": self.shapes,
            "value_ranges": self.value_ranges,
        }

    def write(self, folder: Path) -> Path:
        """Write ``manifest.json`` under a temporary name, then rename it into place."""
        path = folder / MANIFEST
        partial = path.with_name(f".{MANIFEST}.partial")
        partial.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        partial.replace(path)
        return path

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.is_file():
            raise SpecError(f"{path}: no manifest; run 'tritonpipe export' into {folder} first")
        try:
            data = json.loads(path.read_text())
            return cls(
                inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
                outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
                max_batch_size=int(data["max_batch_size"]),
                opset=data.get("opset"),
                torch_version=data["torch_version"],
                factory=data["factory"],
                atol=data["tolerance"]["atol"],
                rtol=data["tolerance"]["rtol"],
                exporter=data.get("exporter", "legacy"),
                artifacts=data["artifacts"],
                shapes=data.get("parity_shapes", []),
                value_ranges=data.get("value_ranges", {}),
                parity={
                    fmt: {
                        name: OutputParity(
                            max_abs_error=p["max_abs_error"],
                            max_rel_error=p["max_rel_error"],
                            batch_sizes=tuple(p["batch_sizes"]),
                            passed=p["passed"],
                            failed_at=p.get("failed_at"),
                        )
                        for name, p in outs.items()
                    }
                    for fmt, outs in data["parity"].items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{path}: malformed manifest ({exc!r})") from exc


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
