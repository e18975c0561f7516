"""Files given to `tritonpipe infer`, read into requests: a .npy or .json file holds one input's
array (batch dimension first, or one row without it); any other file (an image, say) is one
BYTES row. Files whose shapes differ go as separate requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tritonpipe.errors import SpecError
from tritonpipe.tensors import Array, TensorSpec, dtype

if TYPE_CHECKING:  # the client is imported only when `infer` runs
    from tritonpipe.client.checks import ModelInfo

FILES_HELP = (
    "NAME=FILE, or FILE for a single-input model; repeat for more rows. A .npy or .json file "
    "holds the input's array: [batch, *dims] (a batch of rows) or [*dims] (one row). Any other "
    "file (an image, say) is one BYTES row. Files of one shape are joined into one batch; files "
    "of different shapes (token lists of different lengths, say) go as separate requests, the "
    "i-th file of each input together."
)


def _read(spec: TensorSpec, path: Path) -> Array:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=spec.dtype == "BYTES"))
        if suffix == ".json":
            np_type = object if spec.dtype == "BYTES" else dtype(spec.dtype).numpy
            return np.asarray(json.loads(path.read_text()), dtype=np_type)
    except (ValueError, TypeError, OSError, EOFError) as exc:
        kind = "a .npy array" if suffix == ".npy" else f"JSON {spec.dtype} numbers"
        raise SpecError(f"input '{spec.name}': {path} cannot be read as {kind} ({exc})") from None
    # Anything else (images included) is sent as raw bytes: one row.
    return np.array([path.read_bytes()], dtype=object).reshape(*([1] * len(spec.shape)))


def read_file(spec: TensorSpec, path: Path, batching: bool) -> Array:
    """One file as the array to send: with a batch dimension when the model batches."""
    array = _read(spec, path)
    rank = len(spec.shape)
    if batching and array.ndim == rank:
        array = array[np.newaxis]  # one row without its batch dimension
    want = rank + 1 if batching else rank
    if array.ndim != want:
        dims = ", ".join(map(str, spec.shape))
        wanted = f"[batch, {dims}] or [{dims}]" if batching else f"[{dims}]"
        raise SpecError(
            f"input '{spec.name}': {path} holds shape {list(array.shape)}; model input "
            f"'{spec.name}' takes {wanted}"
        )
    return array


def build_requests(info: ModelInfo, files: dict[str, list[Path]]) -> list[dict[str, Array]]:
    """One request when every file of an input has the same row shape (and the batches match
    across inputs); otherwise one request per file position."""
    specs = {s.name: s for s in info.inputs}
    batching = info.max_batch_size > 0
    arrays = {n: [read_file(specs[n], p, batching) for p in paths] for n, paths in files.items()}
    if batching and all(len({a.shape[1:] for a in arrs}) == 1 for arrs in arrays.values()):
        joined = {n: np.concatenate(arrs) for n, arrs in arrays.items()}
        if len({len(a) for a in joined.values()}) == 1:
            return [joined]
    counts = {n: len(arrs) for n, arrs in arrays.items()}
    if len(set(counts.values())) != 1:
        raise SpecError(
            "files of different shapes go as separate requests, one file of each input per "
            f"request, but the inputs have different numbers of files: {counts}"
        )
    count = next(iter(counts.values()))
    return [{n: arrs[i] for n, arrs in arrays.items()} for i in range(count)]
