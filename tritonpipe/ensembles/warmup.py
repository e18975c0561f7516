"""Triton's model warmup for a fused pipeline, from sample inputs the spec names.

Triton warms single models (``model_warmup``) but not ensembles, and a fused pipeline's first
request otherwise pays for the stages' imports, the session's first run and allocator growth.
Each sample is written into the model's ``warmup/`` folder in Triton's raw format: a BYTES
element is its 4-byte little-endian length then its bytes; numbers are row-major raw values.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as pb

from tritonpipe.errors import SpecError
from tritonpipe.tensors import TensorSpec, dtype

WARMUP_FOLDER = "warmup"


def _raw(tensor: TensorSpec, path: Path) -> tuple[bytes, list[int]]:
    """The sample's bytes in Triton's raw format, and its dims (one row, no batch dim)."""
    if dtype(tensor.dtype).triton == "BYTES":
        data = path.read_bytes()
        count = int(np.prod([d if d > 0 else 1 for d in tensor.shape]))
        element = struct.pack("<I", len(data)) + data
        return element * count, [d if d > 0 else 1 for d in tensor.shape]
    array = np.load(path, allow_pickle=False)
    want = np.dtype(dtype(tensor.dtype).numpy)
    dims = list(array.shape)
    if len(dims) != len(tensor.shape) or any(
        d != w and w != -1 for d, w in zip(dims, tensor.shape, strict=True)
    ):
        raise SpecError(
            f"{path}: warmup sample for '{tensor.name}' has shape {dims}, "
            f"the tensor is {tensor.dtype}{list(tensor.shape)} (one row, no batch dim)"
        )
    return array.astype(want).tobytes(order="C"), dims


def add_warmup(
    folder: Path,
    config: pb.ModelConfig,
    inputs: list[TensorSpec],
    samples: dict[str, Path],
    where: str,
) -> None:
    """Write ``samples`` (input name -> file) into ``folder/warmup`` and one ``model_warmup``
    entry of batch size 1 into ``config``; every input needs a sample."""
    missing = [t.name for t in inputs if t.name not in samples]
    unknown = sorted(set(samples) - {t.name for t in inputs})
    if missing or unknown:
        raise SpecError(
            f"{where}: warmup needs one sample per input of {config.name} "
            f"({', '.join(t.name for t in inputs)}); "
            + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}")
        )
    (folder / WARMUP_FOLDER).mkdir(exist_ok=True)
    warmup = pb.ModelWarmup(name="sample", batch_size=1 if config.max_batch_size else 0, count=2)
    for tensor in inputs:
        path = samples[tensor.name]
        if not path.is_file():
            raise SpecError(f"{where}: warmup sample {path} for '{tensor.name}' not found")
        data, dims = _raw(tensor, path)
        (folder / WARMUP_FOLDER / tensor.name).write_bytes(data)
        warmup.inputs[tensor.name].CopyFrom(
            pb.ModelWarmup.Input(
                data_type=pb.DataType.Value(dtype(tensor.dtype).config),
                dims=dims,
                input_data_file=tensor.name,
            )
        )
    config.model_warmup.append(warmup)


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
