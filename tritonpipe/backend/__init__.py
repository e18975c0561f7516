"""Code that runs inside Triton's Python backend. ``model.py`` is copied verbatim into each
generated model's version folder, so it imports only numpy, the standard library and what the
model needs (onnxruntime or torch)."""

from pathlib import Path

MODEL_PY = Path(__file__).with_name("model.py")

__all__ = ["MODEL_PY"]
