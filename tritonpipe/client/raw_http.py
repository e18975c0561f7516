"""A lean HTTP/1.1 transport for the load generator: each request is Triton's binary tensor
protocol, built into bytes once, then written on keep-alive asyncio streams. It skips the
per-request work of tritonclient's aiohttp client (building the body, compression and response
objects), which costs about three times perf_analyzer's CPU per request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

from tritonclient.utils import serialize_byte_tensor

from tritonpipe.errors import PerfError
from tritonpipe.tensors import Array

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def build_request(
    model: str,
    host: str,
    arrays: Mapping[str, Array],
    dtypes: Mapping[str, str],
    outputs: list[str],
    headers: Mapping[str, str] | None = None,
    shm: Mapping[str, tuple[str, int]] | None = None,
) -> bytes:
    """The whole request: headers, JSON inference header, then the raw tensors (or references
    to system shared memory regions, by input name -> (region, byte size))."""
    inputs, blobs = [], []
    for name, array in arrays.items():
        entry: dict[str, object] = {
            "name": name,
            "shape": list(array.shape),
            "datatype": dtypes[name],
        }
        if shm and name in shm:
            region, size = shm[name]
            entry["parameters"] = {"shared_memory_region": region, "shared_memory_byte_size": size}
        else:
            raw = serialize_byte_tensor(array).item() if array.dtype == object else array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        inputs.append(entry)
    wanted = [{"name": o, "parameters": {"binary_data": True}} for o in outputs]
    head = json.dumps({"inputs": inputs, "outputs": wanted}).encode()
    body = head + b"".join(blobs)
    lines = [
        f"POST /v2/models/{model}/infer HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/octet-stream",
        f"Inference-Header-Content-Length: {len(head)}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, content length, keep-alive) from a response's status line and headers."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise PerfError(f"not an HTTP response: {lines[0]!r}")
    length, keep = 0, True
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "content-length":
            length = int(value)
        elif key == "transfer-encoding" and "chunked" in value.lower():
            raise PerfError("chunked responses are not supported by the raw transport")
        elif key == "connection" and value.strip().lower() == "close":
            keep = False
    return int(parts[1]), length, keep


class RawHttp:
    """Keep-alive connections to one server, reused across requests (one per request in flight)."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.idle: list[Connection] = []

    async def infer(self, request: bytes) -> tuple[float, float, str | None]:
        """Send one prebuilt request: (send seconds, receive seconds, error or None)."""
        connection = (
            self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        )
        reader, writer = connection
        try:
            start = time.perf_counter()
            writer.write(request)
            send = time.perf_counter() - start
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout_s)
            before_body = time.perf_counter()
            status, length, keep = parse_head(head)
            body = await asyncio.wait_for(reader.readexactly(length), self.timeout_s)
            recv = time.perf_counter() - before_body
        except BaseException:
            writer.close()  # a half-read connection cannot be reused
            raise
        if keep:
            self.idle.append(connection)
        else:
            writer.close()
        if status != 200:
            try:
                message = str(json.loads(body).get("error", body[:200]))
            except (ValueError, AttributeError):
                message = body[:200].decode(errors="replace")
            return send, recv, f"[{status}] {message}"
        return send, recv, None

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()
