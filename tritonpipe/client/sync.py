"""The synchronous client (HTTP or gRPC)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from tritonpipe.client.base import ClientCore, ClientOptions
from tritonpipe.client.checks import ModelInfo, join
from tritonpipe.client.errors import map_error
from tritonpipe.client.protocol import unwrap_config
from tritonpipe.errors import ClientError, ModelNotFound, did_you_mean
from tritonpipe.tensors import Array

T = TypeVar("T")


class Client:
    """``Client("http://127.0.0.1:8000")`` or ``Client("grpc://127.0.0.1:8001")``.

    ``infer`` takes and returns ``dict[str, numpy.ndarray]``; inputs are checked against the
    model's config (fetched once) before anything is sent.

    One client may be shared by many threads: each thread gets its own connection underneath
    (tritonclient's HTTP client runs on gevent, whose connections cannot cross threads).
    """

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
        self.core = ClientCore(url, protocol, options, asyncio=False)
        self._local = threading.local()
        self._all: list[Any] = []  # every thread's connection, closed by close()
        self._all_lock = threading.Lock()
        self._closed = False
        self._connect()  # fail now, in the caller's thread, on a bad address

    def _connect(self) -> Any:
        timeout = self.core.options.timeout_s
        if self.core.protocol == "http":
            raw = self.core.mod.InferenceServerClient(
                self.core.endpoint.address, connection_timeout=timeout, network_timeout=timeout
            )
        else:
            raw = self.core.mod.InferenceServerClient(self.core.endpoint.address)
        self._local.raw = raw
        with self._all_lock:
            self._all.append(raw)
        return raw

    @property
    def _raw(self) -> Any:
        """This thread's tritonclient connection (made on the thread's first call)."""
        raw = getattr(self._local, "raw", None)
        if raw is None:
            if self._closed:
                raise ClientError("the client is closed")
            raw = self._connect()
        return raw

    @property
    def protocol(self) -> str:
        return self.core.protocol

    def _call(self, context: str, func: Callable[[], T], retry: bool = True) -> T:
        delays = iter(self.core.backoffs() if retry else ())
        while True:
            try:
                return func()
            except Exception as exc:  # noqa: BLE001 - mapped into the project's tree
                error = self.core.located(map_error(exc, context))
                delay = next(delays, None) if self.core.retryable(error) else None
                if delay is None:
                    raise error from exc
                time.sleep(delay)

    # -- models --------------------------------------------------------------------------
    def model(self, name: str) -> ModelInfo:
        """The model's config, fetched on first use and kept."""
        info = self.core.infos.get(name)
        if info is None:
            try:
                raw = self._call(
                    f"model '{name}' config",
                    lambda: self._raw.get_model_config(
                        name, **self._json(), **self.core.call_kwargs()
                    ),
                )
            except ModelNotFound as exc:
                hint = did_you_mean(name, self._model_names())
                if not hint:
                    raise
                raise ModelNotFound(f"{exc}{hint}") from exc
            info = ModelInfo.from_config(name, unwrap_config(self.protocol, raw))
            self.core.infos[name] = info
        return info

    def _model_names(self) -> list[str]:
        """The repository's model names, or [] when the index is not ours to read."""
        try:
            index = self._raw.get_model_repository_index(**self._json(), **self.core.call_kwargs())
        except Exception:  # noqa: BLE001 - only a hint: a restricted index gives none
            return []
        entries = index.get("models", []) if isinstance(index, dict) else index
        return [str(e["name"]) for e in entries if isinstance(e, dict) and "name" in e]

    def metadata(self, name: str) -> dict[str, Any]:
        raw = self._call(
            f"model '{name}' metadata",
            lambda: self._raw.get_model_metadata(name, **self._json(), **self.core.call_kwargs()),
        )
        return dict(raw)

    def _json(self) -> dict[str, Any]:
        return {"as_json": True} if self.protocol == "grpc" else {}

    def is_ready(self) -> bool:
        try:
            return bool(self._raw.is_server_ready(**self.core.call_kwargs()))
        except Exception:  # noqa: BLE001 - a server that does not answer is not ready
            return False

    def is_model_ready(self, name: str) -> bool:
        try:
            return bool(self._raw.is_model_ready(name, **self.core.call_kwargs()))
        except Exception:  # noqa: BLE001
            return False

    def load(self, name: str) -> None:
        self._call(
            f"load model '{name}'",
            lambda: self._raw.load_model(name, **self.core.call_kwargs()),
            retry=False,
        )
        self.core.infos.pop(name, None)

    def unload(self, name: str) -> None:
        self._call(
            f"unload model '{name}'",
            lambda: self._raw.unload_model(name, **self.core.call_kwargs()),
            retry=False,
        )
        self.core.infos.pop(name, None)

    def statistics(self, name: str = "") -> dict[str, Any]:
        raw = self._call(
            "statistics",
            lambda: self._raw.get_inference_statistics(
                name, **self._json(), **self.core.call_kwargs()
            ),
        )
        return dict(raw)

    # -- inference -----------------------------------------------------------------------
    def infer(
        self, model: str, inputs: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Array]:
        """Run ``model``; batches above its max batch size are split and the outputs joined.
        ``headers`` go with each request (HTTP headers, gRPC metadata): a W3C ``traceparent``
        puts the server's spans in the caller's trace (:mod:`tritonpipe.tracing.calls`)."""
        info = self.model(model)
        parts = [self._infer_one(info, arrays, headers) for arrays in self.core.plan(info, inputs)]
        return join(parts)

    def _infer_one(
        self, info: ModelInfo, arrays: dict[str, Array], headers: Mapping[str, str] | None
    ) -> dict[str, Array]:
        context = f"model '{info.name}'"
        kwargs = self.core.infer_kwargs(headers)
        if self.core.pool is None:
            prepared = self.core.prepare(info, arrays)
            result = self._call(
                context,
                lambda: self._raw.infer(info.name, prepared.inputs, **kwargs),
            )
            return self.core.outputs(info, result)
        with self.core.pool.lock:  # regions are reused: one request at a time uses them
            prepared = self.core.prepare(info, arrays)
            for name in prepared.stale_regions:
                self._call(
                    "unregister shared memory",
                    partial(
                        self._raw.unregister_system_shared_memory, name, **self.core.call_kwargs()
                    ),
                )
            for name, key, size in prepared.new_regions:
                self._call(
                    "register shared memory",
                    partial(
                        self._raw.register_system_shared_memory,
                        name,
                        key,
                        size,
                        **self.core.call_kwargs(),
                    ),
                )
            result = self._call(
                context,
                lambda: self._raw.infer(info.name, prepared.inputs, **kwargs),
            )
            return self.core.outputs(info, result)

    def close(self) -> None:
        """Unregister shared memory and close every thread's connection (Triton waits for open
        ones on exit)."""
        if self._closed:
            return
        if self.core.pool is not None:
            for name in self.core.pool.names():
                # The server may be gone; the region is freed all the same.
                with contextlib.suppress(Exception):
                    self._raw.unregister_system_shared_memory(name, **self.core.call_kwargs())
            self.core.pool.destroy()
        self._closed = True
        with self._all_lock:
            connections, self._all = self._all, []
        for raw in connections:
            with contextlib.suppress(Exception):  # another thread's, already dropped: fine
                raw.close()
        self._local = threading.local()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
