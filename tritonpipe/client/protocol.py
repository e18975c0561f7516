"""What differs between HTTP and gRPC, sync and asyncio, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast
from urllib.parse import urlsplit

from tritonpipe.errors import ClientError
from tritonpipe.tensors import Array

DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "http" or "grpc"
    address: str  # host:port, as tritonclient wants it

    @classmethod
    def parse(cls, url: str, protocol: str | None = None) -> Endpoint:
        """``http://h:p``, ``grpc://h:p`` or ``h:p`` with ``protocol``; the scheme wins."""
        parts = urlsplit(url if "://" in url else f"//{url}")
        scheme = parts.scheme or protocol or "http"
        if scheme not in DEFAULT_PORTS:
            raise ClientError(f"url {url!r}: scheme must be http:// or grpc://")
        if protocol and parts.scheme and protocol != parts.scheme:
            raise ClientError(
                f"url {url!r} is {parts.scheme} but protocol {protocol} was asked for"
            )
        host = parts.hostname or "127.0.0.1"
        return cls(scheme, f"{host}:{parts.port or DEFAULT_PORTS[scheme]}")


def module(protocol: str, asyncio: bool) -> ModuleType:
    if protocol == "grpc":
        if asyncio:
            import tritonclient.grpc.aio as grpc_aio

            return cast(ModuleType, grpc_aio)
        import tritonclient.grpc as grpc

        return cast(ModuleType, grpc)
    if asyncio:
        import tritonclient.http.aio as http_aio

        return cast(ModuleType, http_aio)
    import tritonclient.http as http

    return cast(ModuleType, http)


def unwrap_config(protocol: str, answer: Any) -> dict[str, Any]:
    """gRPC's JSON wraps the config as {"config": ...} and writes int64 dims as strings."""
    config: dict[str, Any] = answer.get("config", answer) if protocol == "grpc" else answer
    return config


def infer_inputs(mod: ModuleType, arrays: dict[str, Array], specs: dict[str, str]) -> list[Any]:
    inputs = []
    for name, array in arrays.items():
        tensor = mod.InferInput(name, list(array.shape), specs[name])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def shm_input(mod: ModuleType, name: str, array: Array, dtype: str, region: str, size: int) -> Any:
    tensor = mod.InferInput(name, list(array.shape), dtype)
    tensor.set_shared_memory(region, size)
    return tensor
