"""Triton's model warmup for every model a pipeline builds, from sample inputs the spec names.

Triton warms single models (``model_warmup``) but not ensembles, and a pipeline's first request
otherwise pays for the stages' imports, the sessions' first run and allocator growth. A fused
pipeline gets the samples themselves; in an unfused ensemble each step model gets the tensors
the earlier steps compute from the samples, run in-process at build time with the same runtime
the models use. Each sample is written into the model's ``warmup/`` folder in Triton's raw
format: a BYTES element is its 4-byte little-endian length then its bytes; numbers are row-major
raw values.

A fused model that logs its predictions or looks features up is not given ``model_warmup``:
Triton would send the samples through ``execute`` (logged as predictions, scored by a shadow)
and its lookup would need the online store at load. Its samples go into the version folder
(``warmup.json`` and ``warmup/``) and the model runs them through its steps in ``initialize``,
outside the prediction log, a lookup falling back to its defaults when the store is down.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as pb

from tritonpipe.backend.runtime import Runner, StepFailed
from tritonpipe.backend.warmup import LOAD_WARMUP, WARMUP_FOLDER
from tritonpipe.errors import SpecError
from tritonpipe.repository.config import parse_pbtxt, to_pbtxt
from tritonpipe.repository.validate import CONFIG
from tritonpipe.tensors import TensorSpec, dtype

Array = np.ndarray[Any, Any]


def sample_array(tensor: TensorSpec, path: Path, where: str) -> Array:
    """The sample as one row without the batch dim: a BYTES file's bytes in every element (dynamic
    dims at 1), or a ``.npy`` of the tensor's shape, cast to its dtype."""
    if not path.is_file():
        raise SpecError(f"{where}: warmup sample {path} for '{tensor.name}' not found")
    if dtype(tensor.dtype).triton == "BYTES":
        dims = [d if d > 0 else 1 for d in tensor.shape]
        return np.full(dims, path.read_bytes(), dtype=object)
    array: Array = np.load(path, allow_pickle=False)
    dims = list(array.shape)
    if len(dims) != len(tensor.shape) or any(
        d != w and w != -1 for d, w in zip(dims, tensor.shape, strict=True)
    ):
        raise SpecError(
            f"{path}: warmup sample for '{tensor.name}' has shape {dims}, "
            f"the tensor is {tensor.dtype}{list(tensor.shape)} (one row, no batch dim)"
        )
    cast: Array = array.astype(np.dtype(dtype(tensor.dtype).numpy))
    return cast


def _raw(tensor: TensorSpec, array: Array) -> bytes:
    if dtype(tensor.dtype).triton == "BYTES":
        elements = [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]
        return b"".join(struct.pack("<I", len(v)) + v for v in elements)
    return np.ascontiguousarray(array, dtype=dtype(tensor.dtype).numpy).tobytes(order="C")


def add_warmup_arrays(
    folder: Path, config: pb.ModelConfig, inputs: list[TensorSpec], rows: dict[str, Array]
) -> None:
    """Write ``rows`` (input name -> one row, no batch dim) into ``folder/warmup`` and one
    ``model_warmup`` entry of batch size 1 into ``config``; a model that has one already (a
    step two ensembles share) keeps it."""
    if any(w.name == "sample" for w in config.model_warmup):
        return
    (folder / WARMUP_FOLDER).mkdir(exist_ok=True)
    warmup = pb.ModelWarmup(name="sample", batch_size=1 if config.max_batch_size else 0, count=2)
    for tensor in inputs:
        row = rows[tensor.name]
        (folder / WARMUP_FOLDER / tensor.name).write_bytes(_raw(tensor, row))
        warmup.inputs[tensor.name].CopyFrom(
            pb.ModelWarmup.Input(
                data_type=pb.DataType.Value(dtype(tensor.dtype).config),
                dims=list(row.shape),
                input_data_file=tensor.name,
            )
        )
    config.model_warmup.append(warmup)


def add_load_warmup(version: Path, inputs: list[TensorSpec], rows: dict[str, Array]) -> None:
    """Write ``rows`` (input name -> one row) for the model's own warmup in ``initialize``:
    ``version/warmup.json`` naming, per input, a ``.npy`` (numbers) or a raw file (BYTES)."""
    (version / WARMUP_FOLDER).mkdir(exist_ok=True)
    manifest: dict[str, dict[str, Any]] = {}
    for tensor in inputs:
        row = rows[tensor.name]
        if dtype(tensor.dtype).triton == "BYTES":
            file = f"{tensor.name}.bin"
            value = row.reshape(-1)[0]
            (version / WARMUP_FOLDER / file).write_bytes(
                value if isinstance(value, bytes) else str(value).encode()
            )
        else:
            file = f"{tensor.name}.npy"
            np.save(version / WARMUP_FOLDER / file, row, allow_pickle=False)
        manifest[tensor.name] = {"file": file, "shape": list(row.shape)}
    (version / LOAD_WARMUP).write_text(json.dumps({"inputs": manifest}, indent=1))


def check_samples(names: list[str], samples: dict[str, Any], model: str, where: str) -> None:
    """Every input has a sample and every sample names an input."""
    missing = [n for n in names if n not in samples]
    unknown = sorted(set(samples) - set(names))
    if missing or unknown:
        raise SpecError(
            f"{where}: warmup needs one sample per input of {model} ({', '.join(names)}); "
            + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}")
        )


def add_warmup(
    folder: Path,
    config: pb.ModelConfig,
    inputs: list[TensorSpec],
    samples: dict[str, Path],
    where: str,
) -> None:
    """Write ``samples`` (input name -> file) into ``folder/warmup`` and one ``model_warmup``
    entry of batch size 1 into ``config``; every input needs a sample."""
    check_samples([t.name for t in inputs], samples, config.name, where)
    rows = {t.name: sample_array(t, samples[t.name], where) for t in inputs}
    add_warmup_arrays(folder, config, inputs, rows)


def add_zero_warmup(config: pb.ModelConfig, inputs: list[TensorSpec]) -> None:
    """A ``zero_data`` warmup of one row (dynamic dims at 1): for a scoring model, whose inputs
    are numbers any model accepts, so its runtime's first run happens at load."""
    warmup = pb.ModelWarmup(name="zeros", batch_size=1 if config.max_batch_size else 0, count=1)
    for tensor in inputs:
        warmup.inputs[tensor.name].CopyFrom(
            pb.ModelWarmup.Input(
                data_type=pb.DataType.Value(dtype(tensor.dtype).config),
                dims=[d if d > 0 else 1 for d in tensor.shape],
                zero_data=True,
            )
        )
    config.model_warmup.append(warmup)


def config_inputs(config: pb.ModelConfig) -> list[TensorSpec]:
    return [
        TensorSpec(name=t.name, dtype=pb.DataType.Name(t.data_type), shape=tuple(t.dims))
        for t in config.input
    ]


def _run_step(repo: Path, model: str, config: pb.ModelConfig, rows: dict[str, Array]) -> Any:
    """The step model run in-process on one row: its outputs by config name, one row each."""
    from tritonpipe.pipeline.plans import from_repository  # the pipeline package imports ours

    batched = config.max_batch_size > 0
    runner = Runner(from_repository(repo, model), repo, threads=1)
    out = runner.run({n: a[np.newaxis] if batched else a for n, a in rows.items()})
    return {n: a[0] if batched else a for n, a in out.items()}


def add_ensemble_warmups(
    repo: Path, ensemble: pb.ModelConfig, samples: dict[str, Path], where: str
) -> None:
    """``model_warmup`` in every step model of an unfused ensemble: the first from the samples
    (one per ensemble input), each later one from what the steps before it computed from them."""
    inputs = config_inputs(ensemble)
    check_samples([t.name for t in inputs], samples, ensemble.name, where)
    tensors = {t.name: sample_array(t, samples[t.name], where) for t in inputs}
    last = len(ensemble.ensemble_scheduling.step) - 1
    for i, step in enumerate(ensemble.ensemble_scheduling.step):
        folder = repo / step.model_name
        config = parse_pbtxt((folder / CONFIG).read_text())
        rows = {own: tensors[outer] for own, outer in step.input_map.items()}
        add_warmup_arrays(folder, config, config_inputs(config), rows)
        (folder / CONFIG).write_text(to_pbtxt(config))
        if i == last:
            break
        try:
            out = _run_step(repo, step.model_name, config, rows)
        except StepFailed as exc:
            detail = f" ({exc.detail})" if exc.detail else ""
            raise SpecError(
                f"{where}: step model '{step.model_name}' failed on the warmup sample, so the "
                f"steps after it cannot be warmed: {exc}{detail}"
            ) from None
        tensors.update({outer: out[own] for own, outer in step.output_map.items()})
