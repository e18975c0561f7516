"""The Python-backend model of a known-answer device (copied into a repository as model.py).

Each execute holds one device for ``a_ms + b_ms x rows`` milliseconds, rows summed over the
requests the dynamic batcher gave it. The device is an exclusive ``fcntl`` lock on a file, so
every instance (each a stub process) and every server naming the same file shares it. The wait
is a sleep, so the time held does not depend on how busy the CPUs are; the output is the input.
This file imports nothing from tritonpipe: the Python backend runs it on its own."""

from __future__ import annotations

import fcntl
import json
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = json.loads(args["model_config"]).get("parameters", {})

        def value(name: str) -> str:
            return str(params[name]["string_value"])

        self.a_s = float(value("device.a_ms")) / 1000
        self.b_s = float(value("device.b_ms")) / 1000
        self.lock = open(value("device.lock"), "a+")  # noqa: SIM115 - held for the model's life

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs = [pb_utils.get_input_tensor_by_name(r, "x").as_numpy() for r in requests]
        rows = sum(int(x.shape[0]) for x in inputs)
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            until = time.perf_counter() + self.a_s + self.b_s * rows
            while True:
                left = until - time.perf_counter()
                if left <= 0:
                    break
                time.sleep(left)
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("y", np.asarray(x, dtype=np.float32))])
            for x in inputs
        ]

    def finalize(self) -> None:
        self.lock.close()
