"""Code that runs inside Triton's Python backend. ``model.py`` and ``runtime.py`` (as
``tritonpipe_runtime.py``) are copied verbatim into each generated model's version folder, so they
import only numpy, the standard library and what a step needs (onnxruntime or torch). The
in-process runner imports the same runtime."""

from pathlib import Path

MODEL_PY = Path(__file__).with_name("model.py")
RUNTIME_PY = Path(__file__).with_name("runtime.py")
RUNTIME_MODULE = "tritonpipe_runtime.py"
GUARD_PY = Path(__file__).with_name("guard.py")  # the check in front of a native model

__all__ = ["GUARD_PY", "MODEL_PY", "RUNTIME_MODULE", "RUNTIME_PY"]
