"""tritonpipe's Python-backend runtime, copied verbatim into every generated Python model.

The model's config.pbtxt says what to run (parameter ``tritonpipe.kind``):
  stage        a user function from a file copied beside this one (``tritonpipe.function``,
               e.g. ``stages:preprocess``), called with batched numpy arrays as keyword arguments
               plus ``tritonpipe.kwargs`` (JSON); it returns a dict of batched arrays.
  onnx         ``model.onnx`` with onnxruntime (CUDA for KIND_GPU instances when available).
  torchscript  ``model.pt`` with torch.jit (CUDA for KIND_GPU instances when available).

Requests merged by the dynamic batcher run as one batch and their outputs are split back. When a
merged batch fails, each request runs alone, so one bad request never fails its neighbours.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

Arrays = dict[str, "np.ndarray[Any, Any]"]


class UserInputError(Exception):
    """A request the model cannot take; answered as INVALID_ARG."""


def _load_stage(folder: Path, ref: str, kwargs: dict[str, Any]) -> Callable[[Arrays], Arrays]:
    module_name, _, func_name = ref.rpartition(":")
    path = folder / f"{module_name.replace('.', '/')}.py"
    sys.path.insert(0, str(folder))  # the stage file may import its neighbours
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    func = getattr(module, func_name)

    def run(inputs: Arrays) -> Arrays:
        try:
            return dict(func(**inputs, **kwargs))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise UserInputError(str(exc)) from exc

    return run


def _load_onnx(path: Path, gpu: bool, device_id: int) -> Callable[[Arrays], Arrays]:
    import onnxruntime as ort

    providers: list[Any] = ["CPUExecutionProvider"]
    if gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
    session = ort.InferenceSession(str(path), providers=providers)
    names = [o.name for o in session.get_outputs()]

    def run(inputs: Arrays) -> Arrays:
        return dict(zip(names, session.run(names, inputs), strict=True))

    return run


def _load_torchscript(
    path: Path, gpu: bool, device_id: int, inputs: list[str], outputs: list[str]
) -> Callable[[Arrays], Arrays]:
    import torch

    device = torch.device(f"cuda:{device_id}" if gpu and torch.cuda.is_available() else "cpu")
    module = torch.jit.load(str(path), map_location=device).eval()

    def run(arrays: Arrays) -> Arrays:
        with torch.inference_mode():
            result = module(*(torch.from_numpy(arrays[n]).to(device) for n in inputs))
        if not isinstance(result, (tuple, list)):
            result = (result,)
        return {n: t.cpu().numpy() for n, t in zip(outputs, result, strict=True)}

    return run


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.name = args["model_name"]
        self.kind = params.get("tritonpipe.kind", "stage")
        self.batched = config.get("max_batch_size", 0) > 0
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
        }
        folder = Path(args["model_repository"]) / args["model_version"]
        gpu = args.get("model_instance_kind") == "GPU"
        device_id = int(args.get("model_instance_device_id", 0))
        if self.kind == "stage":
            kwargs = json.loads(params.get("tritonpipe.kwargs", "{}"))
            self.run = _load_stage(folder, params["tritonpipe.function"], kwargs)
        elif self.kind == "onnx":
            self.run = _load_onnx(folder / "model.onnx", gpu, device_id)
        elif self.kind == "torchscript":
            self.run = _load_torchscript(
                folder / "model.pt", gpu, device_id, self.inputs, list(self.outputs)
            )
        else:
            raise ValueError(f"model '{self.name}': unknown tritonpipe.kind '{self.kind}'")
        # --- issue 10: prediction-log hook (see tritonpipe/predlog/triton.py). Only models whose
        # config has the `tritonpipe.predlog` parameter (a logging ensemble's last step) log. ---
        self.predlog = None
        if "tritonpipe.predlog" in params:
            from tritonpipe.predlog.triton import TritonPredictionLog

            repository = Path(args["model_repository"]).parent
            self.predlog = TritonPredictionLog.from_parameters(params, repository, pb_utils)

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [self._read(r) for r in requests]
        responses = self._answer(arrays)
        if self.predlog is not None:  # issue 10: queue answered requests; never blocks or raises
            self.predlog.after_execute(requests, arrays, responses)
        return responses

    def finalize(self) -> None:
        if self.predlog is not None:  # issue 10: write every queued record on a clean stop
            self.predlog.finalize()

    def _answer(self, arrays: list[Arrays]) -> list[Any]:
        if self.batched and len(arrays) > 1:
            try:
                return [self._respond(o) for o in self._run_merged(arrays)]
            except Exception:  # noqa: BLE001 - retried per request below, errors reported there
                pass
        return [self._respond_or_error(a) for a in arrays]

    def _read(self, request: Any) -> Arrays:
        result = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                result[name] = tensor.as_numpy()
        return result

    def _run_merged(self, arrays: list[Arrays]) -> list[Arrays]:
        sizes = [len(next(iter(a.values()))) for a in arrays]
        merged = {n: np.concatenate([a[n] for a in arrays]) for n in arrays[0]}
        out = self._checked(self.run(merged), sum(sizes))
        bounds = np.cumsum(sizes)[:-1]
        split = {n: np.split(v, bounds) for n, v in out.items()}
        return [{n: split[n][i] for n in split} for i in range(len(arrays))]

    def _checked(self, out: Arrays, rows: int) -> Arrays:
        """Every declared output present, in its declared dtype, one row per input row."""
        result = {}
        for name, np_type in self.outputs.items():
            if name not in out:
                raise RuntimeError(f"model '{self.name}' produced no output '{name}'")
            value = np.asarray(out[name], dtype=object if np_type == np.object_ else np_type)
            if self.batched and (value.ndim == 0 or len(value) != rows):
                raise RuntimeError(
                    f"model '{self.name}' output '{name}' has {len(value)} rows for {rows} inputs"
                )
            result[name] = value
        return result

    def _respond(self, out: Arrays) -> Any:
        return pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in out.items()])

    def _respond_or_error(self, arrays: Arrays) -> Any:
        try:
            rows = len(next(iter(arrays.values()))) if self.batched and arrays else 0
            return self._respond(self._checked(self.run(arrays), rows))
        except UserInputError as exc:
            code = pb_utils.TritonError.INVALID_ARG
            message = f"model '{self.name}' rejected the request: {exc}"
        except Exception as exc:  # noqa: BLE001 - becomes this request's error, server stays up
            code = pb_utils.TritonError.INTERNAL
            message = f"model '{self.name}' failed: {type(exc).__name__}: {exc}"
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
