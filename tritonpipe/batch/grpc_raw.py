"""The Triton engine's gRPC path: requests built straight from the arrays, responses read
straight into arrays.

tritonclient's asyncio client wraps every tensor in ``InferInput``/``InferResult`` objects and
checks each request on the way; a batch job already holds checked, typed arrays, and on a small
machine that per-request Python work competes with the server for the same cores. Here a request
is one ``ModelInferRequest`` with ``raw_input_contents`` (serialized by
:func:`tritonpipe.client.raw_grpc.build_request`, the load generator's own), sent as bytes through
grpcio, and each output is an ``np.frombuffer`` view of the response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from tritonpipe.client.errors import map_error
from tritonpipe.client.raw_grpc import CHANNEL_OPTIONS, INFER_METHOD, build_request, parse_response
from tritonpipe.tensors import Array, TensorSpec, dtype


class RawGrpcInfer:
    """ModelInfer calls for one model on one channel (HTTP/2 multiplexes the calls in flight)."""

    def __init__(
        self,
        address: str,
        model: str,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.dtypes = {s.name: s.dtype for s in inputs}
        self.numpy = {s.name: dtype(s.dtype).numpy for s in inputs}
        self.output_names = [s.name for s in outputs]
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.call: Any = self.channel.unary_unary(INFER_METHOD)  # bytes in, bytes out

    async def infer(
        self, arrays: dict[str, Array], headers: Mapping[str, str] | None = None
    ) -> dict[str, Array]:
        """One request; ``headers`` (a ``traceparent``) travel as gRPC metadata."""
        typed = {
            name: np.ascontiguousarray(array, dtype=self.numpy[name])
            for name, array in arrays.items()
        }
        request = build_request(self.model, typed, self.dtypes, self.output_names)
        try:
            metadata = tuple((k.lower(), v) for k, v in headers.items()) if headers else None
            data = await self.call(request, timeout=self.timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:  # the server's status, into the project's tree
            error = InferenceServerException(msg=exc.details() or "", status=str(exc.code()))
            raise map_error(error, f"model '{self.model}'") from None
        response = parse_response(data)
        out: dict[str, Array] = {}
        for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
            shape = tuple(tensor.shape)
            if tensor.datatype == "BYTES":
                out[tensor.name] = deserialize_bytes_tensor(raw).reshape(shape)
            else:
                out[tensor.name] = np.frombuffer(raw, dtype=dtype(tensor.datatype).numpy).reshape(
                    shape
                )
        return out

    async def close(self) -> None:
        await self.channel.close()
