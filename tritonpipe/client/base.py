"""The part of the clients that does no I/O: options, request building, retry policy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tritonpipe.client.checks import ModelInfo, check_inputs, chunks
from tritonpipe.client.protocol import Endpoint, infer_inputs, module, shm_input
from tritonpipe.errors import ClientError, InputError, Unavailable
from tritonpipe.server.options import TOKEN_HEADER
from tritonpipe.tensors import Array


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """``timeout_s`` bounds each request; only Unavailable answers are retried, ``retries``
    times, waiting ``backoff_s`` doubled each time. Inputs of ``shm_threshold_bytes`` or more
    go through system shared memory when ``shared_memory`` is on (same host only)."""

    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.2
    token: str | None = None
    shared_memory: bool = False
    shm_threshold_bytes: int = 1 << 20
    split_batches: bool = True  # else a batch above max_batch_size is an InputError


@dataclass
class Prepared:
    """One request, ready to send: tritonclient inputs and which shm regions it needs."""

    inputs: list[Any]
    new_regions: list[tuple[str, str, int]]  # (name, key, size) to register first
    stale_regions: list[str]  # replaced regions to unregister first


class ClientCore:
    def __init__(
        self, url: str, protocol: str | None, options: ClientOptions, asyncio: bool
    ) -> None:
        self.endpoint = Endpoint.parse(url, protocol)
        self.options = options
        self.asyncio = asyncio
        self.mod = module(self.endpoint.protocol, asyncio)
        # Triton reads gRPC restricted-protocol keys from "triton-grpc-protocol-<key>" metadata.
        header = TOKEN_HEADER if self.protocol == "http" else f"triton-grpc-protocol-{TOKEN_HEADER}"
        self.headers = {header: options.token} if options.token else None
        self.infos: dict[str, ModelInfo] = {}
        self.pool = _pool() if options.shared_memory else None

    @property
    def protocol(self) -> str:
        return self.endpoint.protocol

    def backoffs(self) -> Iterator[float]:
        for attempt in range(self.options.retries):
            yield self.options.backoff_s * (2**attempt)

    def located(self, error: ClientError) -> ClientError:
        """An unreachable server's error names the URL that was tried."""
        url = f"{self.protocol}://{self.endpoint.address}"
        if isinstance(error, Unavailable) and self.endpoint.address not in str(error):
            located = Unavailable(f"{error} (server {url})")
            located.__cause__ = error.__cause__
            return located
        return error

    def retryable(self, exc: ClientError) -> bool:
        return isinstance(exc, Unavailable)

    def plan(self, info: ModelInfo, inputs: Mapping[str, Any]) -> list[dict[str, Array]]:
        """Checked arrays, split into requests no larger than the model's max batch size."""
        arrays, batch = check_inputs(info, inputs)
        if not self.options.split_batches and batch > info.max_batch_size > 0:
            raise InputError(
                f"batch of {batch} is larger than model '{info.name}' "
                f"max_batch_size {info.max_batch_size}"
            )
        return list(chunks(arrays, batch, info.max_batch_size))

    def prepare(self, info: ModelInfo, arrays: dict[str, Array]) -> Prepared:
        dtypes = {s.name: s.dtype for s in info.inputs}
        if self.pool is None:
            return Prepared(infer_inputs(self.mod, arrays, dtypes), [], [])
        inputs, new = [], []
        for name, array in arrays.items():
            if array.nbytes < self.options.shm_threshold_bytes and array.dtype != object:
                inputs += infer_inputs(self.mod, {name: array}, dtypes)
                continue
            region, size, created = self.pool.place(name, array)
            if created:
                new.append((region.name, self.pool.key(region), region.size))
            inputs.append(shm_input(self.mod, name, array, dtypes[name], region.name, size))
        stale, self.pool.stale = self.pool.stale, []
        return Prepared(inputs, new, stale)

    def outputs(self, info: ModelInfo, result: Any) -> dict[str, Array]:
        return {s.name: result.as_numpy(s.name) for s in info.outputs}

    def infer_kwargs(self, extra_headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """tritonclient's ``infer`` keywords; ``extra_headers`` (a ``traceparent``) go with the
        request as HTTP headers or gRPC metadata (lowercase keys: gRPC refuses others)."""
        headers = dict(self.headers or {})
        if extra_headers:
            if self.protocol == "grpc":
                headers.update({k.lower(): v for k, v in extra_headers.items()})
            else:
                headers.update(extra_headers)
        if self.protocol == "http" and self.asyncio:
            # aiohttp asks for gzip by default; Triton would compress every response for nothing.
            headers["Accept-Encoding"] = "identity"
        kwargs: dict[str, Any] = {"headers": headers or None}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.options.timeout_s
        return kwargs

    def call_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the non-inference calls."""
        kwargs: dict[str, Any] = {"headers": self.headers}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.options.timeout_s
        return kwargs


def _pool() -> Any:
    from tritonpipe.client.shm import SharedMemoryPool  # only when shared memory is asked for

    return SharedMemoryPool()
