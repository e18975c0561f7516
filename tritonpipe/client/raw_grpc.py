"""A lean gRPC transport for the load generator: each request is a ``ModelInferRequest``
serialized once into bytes, and grpcio sends those bytes as they are (a unary-unary call with no
serializer). Responses come back as bytes and are not parsed: a call that returns is a success,
a failed one raises with its status. tritonclient's asyncio client builds and parses a protobuf
message per request, which costs several times perf_analyzer's client CPU."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

from tritonpipe.tensors import Array

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
# As tritonclient's: no limit on the size of a request or a response.
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def build_request(
    model: str,
    arrays: Mapping[str, Array],
    dtypes: Mapping[str, str],
    outputs: list[str],
    shm: Mapping[str, tuple[str, int]] | None = None,
) -> bytes:
    """A serialized ``ModelInferRequest``: tensors in ``raw_input_contents`` (or references to
    system shared memory regions, by input name -> (region, byte size))."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in arrays.items():
        tensor = request.inputs.add(name=name, datatype=dtypes[name], shape=list(array.shape))
        if shm and name in shm:
            region, size = shm[name]
            tensor.parameters["shared_memory_region"].string_param = region
            tensor.parameters["shared_memory_byte_size"].int64_param = size
        else:
            raw = serialize_byte_tensor(array).item() if array.dtype == object else array.tobytes()
            request.raw_input_contents.append(raw)
    for name in outputs:
        request.outputs.add(name=name)
    data: bytes = request.SerializeToString()
    return data


def parse_response(data: bytes) -> service_pb2.ModelInferResponse:
    """The whole response, for callers (and tests) that want the outputs."""
    response = service_pb2.ModelInferResponse()
    response.ParseFromString(data)
    return response


class RawGrpc:
    """One channel (HTTP/2 multiplexes every request in flight on it) and one bytes-in,
    bytes-out stub for ModelInfer."""

    def __init__(
        self, address: str, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self.metadata = tuple((k.lower(), v) for k, v in (headers or {}).items()) or None
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        # No serializer either way: grpcio sends and returns the bytes as they are.
        self.call = self.channel.unary_unary(INFER_METHOD)

    async def infer(self, request: bytes) -> tuple[float, float, str | None]:
        """Send one prebuilt request: (send seconds, receive seconds, error or None). grpcio does
        not separate sending from waiting, so both times are 0, as with tritonclient's gRPC
        client; the latency is the whole call."""
        try:
            await self.call(request, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            return 0.0, 0.0, f"[{exc.code().name}] {exc.details()}"
        return 0.0, 0.0, None

    async def close(self) -> None:
        await self.channel.close()
