"""The asyncio client: the same interface as :class:`tritonpipe.client.Client`, awaited."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from tritonpipe.client.base import ClientCore, ClientOptions
from tritonpipe.client.checks import ModelInfo, join
from tritonpipe.client.errors import map_error
from tritonpipe.client.protocol import unwrap_config
from tritonpipe.tensors import Array

T = TypeVar("T")


class AsyncClient:
    """``async with AsyncClient("grpc://127.0.0.1:8001") as client: await client.infer(...)``."""

    def __init__(
        self,
        url: str,
        *,
        protocol: str | None = None,
        token: str | None = None,
        timeout_s: float = ClientOptions.timeout_s,
        retries: int = ClientOptions.retries,
        backoff_s: float = ClientOptions.backoff_s,
        shared_memory: bool = False,
        shm_threshold_bytes: int = ClientOptions.shm_threshold_bytes,
        split_batches: bool = True,
    ) -> None:
        """``token``: the server's (``serve --token``); the other options are
        :class:`ClientOptions`'s."""
        options = ClientOptions(
            token=token,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            shared_memory=shared_memory,
            shm_threshold_bytes=shm_threshold_bytes,
            split_batches=split_batches,
        )
        self.core = ClientCore(url, protocol, options, asyncio=True)
        if self.core.protocol == "http":
            self._raw = self.core.mod.InferenceServerClient(
                self.core.endpoint.address, conn_timeout=self.core.options.timeout_s
            )
        else:
            self._raw = self.core.mod.InferenceServerClient(self.core.endpoint.address)
        self._shm_lock = asyncio.Lock()

    @property
    def protocol(self) -> str:
        return self.core.protocol

    async def _call(self, context: str, func: Callable[[], Awaitable[T]], retry: bool = True) -> T:
        delays = iter(self.core.backoffs() if retry else ())
        while True:
            try:
                # HTTP's aio client has no per-call timeout; bound every call here.
                return await asyncio.wait_for(func(), self.core.options.timeout_s)
            except Exception as exc:  # noqa: BLE001 - mapped into the project's tree
                error = self.core.located(map_error(exc, context))
                delay = next(delays, None) if self.core.retryable(error) else None
                if delay is None:
                    raise error from exc
                await asyncio.sleep(delay)

    def _json(self) -> dict[str, Any]:
        return {"as_json": True} if self.protocol == "grpc" else {}

    async def model(self, name: str) -> ModelInfo:
        info = self.core.infos.get(name)
        if info is None:
            raw = await self._call(
                f"model '{name}' config",
                lambda: self._raw.get_model_config(name, **self._json(), **self.core.call_kwargs()),
            )
            info = ModelInfo.from_config(name, unwrap_config(self.protocol, raw))
            self.core.infos[name] = info
        return info

    async def metadata(self, name: str) -> dict[str, Any]:
        raw = await self._call(
            f"model '{name}' metadata",
            lambda: self._raw.get_model_metadata(name, **self._json(), **self.core.call_kwargs()),
        )
        return dict(raw)

    async def is_ready(self) -> bool:
        try:
            return bool(await self._raw.is_server_ready(headers=self.core.headers))
        except Exception:  # noqa: BLE001 - a server that does not answer is not ready
            return False

    async def is_model_ready(self, name: str) -> bool:
        try:
            return bool(await self._raw.is_model_ready(name, headers=self.core.headers))
        except Exception:  # noqa: BLE001
            return False

    async def load(self, name: str) -> None:
        await self._call(
            f"load model '{name}'",
            lambda: self._raw.load_model(name, **self.core.call_kwargs()),
            retry=False,
        )
        self.core.infos.pop(name, None)

    async def unload(self, name: str) -> None:
        await self._call(
            f"unload model '{name}'",
            lambda: self._raw.unload_model(name, **self.core.call_kwargs()),
            retry=False,
        )
        self.core.infos.pop(name, None)

    async def statistics(self, name: str = "") -> dict[str, Any]:
        raw = await self._call(
            "statistics",
            lambda: self._raw.get_inference_statistics(
                name, **self._json(), **self.core.call_kwargs()
            ),
        )
        return dict(raw)

    async def infer(
        self, model: str, inputs: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Array]:
        """Run ``model``; batches above its max batch size are split, sent concurrently, joined.
        ``headers`` go with each request, as :meth:`tritonpipe.client.Client.infer`'s do."""
        info = await self.model(model)
        plan = self.core.plan(info, inputs)
        parts = await asyncio.gather(*(self._infer_one(info, arrays, headers) for arrays in plan))
        return join(list(parts))

    async def _infer_one(
        self, info: ModelInfo, arrays: dict[str, Array], headers: Mapping[str, str] | None
    ) -> dict[str, Array]:
        context = f"model '{info.name}'"
        kwargs = self.core.infer_kwargs(headers)
        if self.core.pool is None:
            prepared = self.core.prepare(info, arrays)
            result = await self._call(
                context,
                lambda: self._raw.infer(info.name, prepared.inputs, **kwargs),
            )
            return self.core.outputs(info, result)
        async with self._shm_lock:  # regions are reused: one request at a time uses them
            prepared = self.core.prepare(info, arrays)
            for name in prepared.stale_regions:
                await self._call(
                    "unregister shared memory",
                    partial(
                        self._raw.unregister_system_shared_memory, name, headers=self.core.headers
                    ),
                )
            for name, key, size in prepared.new_regions:
                await self._call(
                    "register shared memory",
                    partial(
                        self._raw.register_system_shared_memory,
                        name,
                        key,
                        size,
                        headers=self.core.headers,
                    ),
                )
            result = await self._call(
                context,
                lambda: self._raw.infer(info.name, prepared.inputs, **kwargs),
            )
            return self.core.outputs(info, result)

    async def close(self) -> None:
        if self.core.pool is not None:
            for name in self.core.pool.names():
                # The server may be gone; the region is freed all the same.
                with contextlib.suppress(Exception):
                    await self._raw.unregister_system_shared_memory(name, headers=self.core.headers)
            self.core.pool.destroy()
        await self._raw.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
