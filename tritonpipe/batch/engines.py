"""Engines score a unit's input arrays: the embedded pipeline, or a running Triton server.

Both add only transport around the same plan: the in-process engine calls
:class:`tritonpipe.pipeline.Pipeline` batch by batch; the Triton engine keeps ``in_flight``
requests outstanding (asyncio, one event-loop thread) so the server's dynamic batcher stays fed.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np

from tritonpipe.errors import ClientError, PipelineError, TritonPipeError
from tritonpipe.records import Contract
from tritonpipe.tensors import Array, TensorSpec

T = TypeVar("T")
Arrays = dict[str, Array]


def _rows(arrays: Arrays) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0


def _slices(arrays: Arrays, size: int) -> list[Arrays]:
    rows = _rows(arrays)
    return [{k: v[i : i + size] for k, v in arrays.items()} for i in range(0, rows, size)]


def _join(parts: list[Arrays]) -> Arrays:
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class Engine(ABC):
    """Scores batches; ``predict_rows`` isolates failures to single rows."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    contract: Contract  # its inputs' and outputs' rules (options filled in by the job's spec)

    @abstractmethod
    def predict(self, arrays: Arrays) -> Arrays:
        """Outputs for every row; raises when any batch fails."""

    @abstractmethod
    def predict_rows(self, arrays: Arrays) -> list[Arrays | TritonPipeError]:
        """One result per row; a failing row returns its error."""

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release the pipeline or connection."""


class InProcessEngine(Engine):
    def __init__(
        self, pipeline: str, model: str | None, *, batch_size: int, threads: int | None = None
    ) -> None:
        from tritonpipe.pipeline import Pipeline

        self.pipe = Pipeline.load(pipeline, model, threads=threads, traced_as="batch")
        self.name = self.pipe.name
        self.inputs = self.pipe.inputs
        self.outputs = self.pipe.outputs
        self.contract = self.pipe.contract
        self.batch_size = batch_size

    def predict(self, arrays: Arrays) -> Arrays:
        return _join([self.pipe(part) for part in _slices(arrays, self.batch_size)])

    def predict_rows(self, arrays: Arrays) -> list[Arrays | TritonPipeError]:
        return list(self.pipe.run_requests(_slices(arrays, 1)))

    def close(self) -> None:
        self.pipe.close()  # a shadowing pipeline's challenger finishes, its logs flush


class TritonEngine(Engine):
    """Requests of ``batch_size`` rows to ``url`` (http://, grpc://), ``in_flight`` at a time;
    over gRPC the requests go through :class:`tritonpipe.batch.grpc_raw.RawGrpcInfer`.

    With tracing on (``TRITONPIPE_TRACE_URL``, as for the in-process engine) each request is a
    client span, ``batch <model>``, whose ``traceparent`` goes with it: the server's spans (and
    a fused model's step spans) join its trace (:mod:`tritonpipe.tracing.calls`)."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        batch_size: int,
        in_flight: int = 8,
        protocol: str | None = None,
    ) -> None:
        from tritonpipe.client import AsyncClient
        from tritonpipe.tracing.calls import CallTracing

        # Read first, on the caller's thread (a refusal leaves no loop or channel behind);
        # ``call`` itself only queues a span, so it is safe on the loop.
        self.tracing = CallTracing.from_env(label="batch", model=model, server=url)
        self.batch_size = batch_size
        self.in_flight = in_flight
        self._raw: Any = None
        self.client: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self.client = self._wait(self._make(AsyncClient, url, protocol))
            info = self._wait(self.client.model(model))
            if self.client.protocol == "grpc":
                from tritonpipe.batch.grpc_raw import RawGrpcInfer

                address = self.client.core.endpoint.address
                self._raw = self._wait(self._make_raw(RawGrpcInfer, address, info))
        except BaseException:  # a wrong model or server: nothing left open (no hang at exit)
            self._shutdown()
            raise
        self.name = model
        self.inputs = info.inputs
        self.outputs = info.outputs
        self.contract = Contract.from_specs(self.inputs, self.outputs)
        if info.max_batch_size > 0:  # one request per slice: never above the model's max batch
            self.batch_size = min(batch_size, info.max_batch_size)

    async def _make_raw(self, cls: Any, address: str, info: Any) -> Any:
        return cls(address, info.name, info.inputs, info.outputs)  # on the loop that uses it

    async def _make(self, cls: Any, url: str, protocol: str | None) -> Any:
        return cls(url, protocol=protocol)  # created on the loop that will use it

    def _wait(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _gather(self, parts: list[Arrays]) -> list[Arrays | BaseException]:
        gate = asyncio.Semaphore(self.in_flight)

        async def one(part: Arrays) -> Arrays:
            async with gate:
                if self.tracing is None:
                    return await self._send(part, None)
                with self.tracing.call(_rows(part)) as headers:
                    return await self._send(part, headers)

        return list(await asyncio.gather(*(one(p) for p in parts), return_exceptions=True))

    async def _send(self, part: Arrays, headers: dict[str, str] | None) -> Arrays:
        if self._raw is not None:
            raw: Arrays = await self._raw.infer(part, headers)
            return raw
        result: Arrays = await self.client.infer(self.name, part, headers=headers)
        return result

    def predict(self, arrays: Arrays) -> Arrays:
        results = self._wait(self._gather(_slices(arrays, self.batch_size)))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return _join([r for r in results if not isinstance(r, BaseException)])

    def predict_rows(self, arrays: Arrays) -> list[Arrays | TritonPipeError]:
        out: list[Arrays | TritonPipeError] = []
        for result in self._wait(self._gather(_slices(arrays, 1))):
            if isinstance(result, TritonPipeError):
                out.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                out.append(result)
        return out

    def close(self) -> None:
        self._shutdown()
        if self.tracing is not None:
            self.tracing.flush()  # the last requests' spans leave with the job

    def _shutdown(self) -> None:
        """Close the channels and stop the loop; each step bounded, so a server gone quiet
        cannot hold the job (or the interpreter's exit) forever."""
        try:
            if self._raw is not None:
                self._wait(self._raw.close(), timeout_s=10)
            if self.client is not None:
                self._wait(self.client.close(), timeout_s=10)
        finally:
            self._raw = self.client = None
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


def is_bad_input(exc: BaseException) -> bool:
    """Whether a failure was the input's fault (so the row is rejected, not the job failed)."""
    from tritonpipe.errors import InputError, InvalidArgument

    if isinstance(exc, PipelineError):
        return exc.invalid
    return isinstance(exc, InputError | InvalidArgument) or (
        isinstance(exc, ClientError) and "invalid" in str(exc).lower()
    )
