"""PyTorch -> ONNX / TorchScript / AOTInductor export with parity checks and a manifest."""

from tritonpipe.export.exporter import export
from tritonpipe.export.inputs import ExportInput, parse_export_input
from tritonpipe.export.manifest import FORMATS, Manifest, OutputParity

__all__ = ["FORMATS", "ExportInput", "Manifest", "OutputParity", "export", "parse_export_input"]
