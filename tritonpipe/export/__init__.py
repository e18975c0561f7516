"""PyTorch -> ONNX / TorchScript export with parity checks and a manifest."""

from tritonpipe.export.exporter import export
from tritonpipe.export.manifest import FORMATS, Manifest, OutputParity

__all__ = ["FORMATS", "Manifest", "OutputParity", "export"]
