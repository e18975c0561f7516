"""System shared memory for large input tensors: one region per input name, registered once,
grown when a larger tensor comes, unregistered and unlinked on close."""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.utils import serialize_byte_tensor

from tritonpipe.tensors import Array

with warnings.catch_warnings():  # it imports pkg_resources, deprecated but working
    warnings.simplefilter("ignore")
    import tritonclient.utils.shared_memory as shm


@dataclass
class _Region:
    name: str
    handle: Any
    size: int


def tensor_bytes(array: Array) -> int:
    """Bytes the tensor takes in shared memory (BYTES tensors are length-prefixed)."""
    if array.dtype == np.object_:
        serialized = serialize_byte_tensor(array)  # a 0-d object array holding the bytes
        return len(serialized.item()) if serialized is not None else 0
    return int(array.nbytes)


class SharedMemoryPool:
    """Regions keyed by input name. ``register``/``unregister`` are the client's calls."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"tritonpipe_{os.getpid()}_{id(self):x}"
        self.regions: dict[str, _Region] = {}
        self.stale: list[str] = []  # replaced by larger regions; still registered on the server
        self.lock = threading.Lock()

    def place(self, input_name: str, array: Array) -> tuple[_Region, int, bool]:
        """Copy ``array`` into the input's region. Returns (region, bytes, created) where
        ``created`` says the caller must (re)register it with the server."""
        size = tensor_bytes(array)
        region = self.regions.get(input_name)
        created = False
        if region is None or region.size < size:
            if region is not None:
                shm.destroy_shared_memory_region(region.handle)
                self.stale.append(region.name)
            name = f"{self.prefix}_{input_name}_{size}"
            handle = shm.create_shared_memory_region(name, f"/{name}", size)
            region = _Region(name=name, handle=handle, size=size)
            self.regions[input_name] = region
            created = True
        # BYTES tensors go in serialized (length-prefixed), as the server reads them.
        data = serialize_byte_tensor(array) if array.dtype == np.object_ else array
        shm.set_shared_memory_region(region.handle, [data])
        return region, size, created

    def key(self, region: _Region) -> str:
        return f"/{region.name}"

    def names(self) -> list[str]:
        return [r.name for r in self.regions.values()]

    def destroy(self) -> None:
        """Free every region (after the client unregistered them)."""
        for region in self.regions.values():
            shm.destroy_shared_memory_region(region.handle)
        self.regions.clear()
