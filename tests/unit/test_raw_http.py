import asyncio
import json

import numpy as np
import pytest

from tritonpipe.client.raw_http import RawHttp, build_request, parse_head
from tritonpipe.errors import PerfError


def test_build_request_is_triton_binary_protocol() -> None:
    pixels = np.arange(4, dtype=np.float32).reshape(1, 4)
    images = np.array([[b"png"]], dtype=object)
    request = build_request(
        "m",
        "h:1",
        {"x": pixels, "image": images},
        {"x": "FP32", "image": "BYTES"},
        ["y"],
        {"tritonpipe-token": "t"},
    )
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v2/models/m/infer HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    assert headers["tritonpipe-token"] == "t"
    json_size = int(headers["Inference-Header-Content-Length"])
    document = json.loads(body[:json_size])
    assert document["inputs"][0] == {
        "name": "x",
        "shape": [1, 4],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 16},
    }
    assert document["inputs"][1]["parameters"] == {"binary_data_size": 7}  # 4-byte length + "png"
    assert document["outputs"] == [{"name": "y", "parameters": {"binary_data": True}}]
    assert body[json_size:] == pixels.tobytes() + b"\x03\x00\x00\x00png"


def test_build_request_with_shared_memory() -> None:
    request = build_request(
        "m",
        "h:1",
        {"x": np.zeros((1, 4), np.float32)},
        {"x": "FP32"},
        ["y"],
        shm={"x": ("region", 16)},
    )
    body = request.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["inputs"][0]["parameters"] == {
        "shared_memory_region": "region",
        "shared_memory_byte_size": 16,
    }


def test_parse_head() -> None:
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n") == (200, 12, True)
    assert parse_head(
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\nConnection: close\r\n\r\n"
    ) == (400, 3, False)
    with pytest.raises(PerfError, match="chunked"):
        parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(PerfError, match="not an HTTP response"):
        parse_head(b"SSH-2.0\r\n\r\n")


async def test_keep_alive_reuse_and_error_bodies() -> None:
    """Below the transport: a tiny HTTP server answering 200, then a Triton-style JSON error."""
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b'HTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\n\r\n{"error": "nope"}',
    ]
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for answer in answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            await reader.readexactly(length)
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = RawHttp("127.0.0.1", port, timeout_s=5)
    request = build_request(
        "m", f"127.0.0.1:{port}", {"x": np.zeros((1, 2), np.float32)}, {"x": "FP32"}, ["y"]
    )
    assert (await transport.infer(request))[2] is None
    assert (await transport.infer(request))[2] == "[400] nope"
    assert connections == 1  # the keep-alive connection was reused
    await transport.close()
    server.close()
    await server.wait_closed()


def test_blocking_keep_alive_reuse_error_bodies_and_a_closed_connection() -> None:
    """The threads' transport against a tiny server: 200, a JSON error, then a close mid-way."""
    import socket
    import threading

    from tritonpipe.client.blocking import BlockingHttp

    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b'HTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\n\r\n{"error": "nope"}',
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\ncut",  # then the connection closes
    ]
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []

    def serve() -> None:
        conn, _ = listener.accept()
        accepted.append(1)
        with conn:
            data = b""
            for answer in answers:
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = BlockingHttp("127.0.0.1", port, timeout_s=5)
    request = build_request(
        "m", f"127.0.0.1:{port}", {"x": np.zeros((1, 2), np.float32)}, {"x": "FP32"}, ["y"]
    )
    assert transport.infer(request)[2] is None
    assert transport.infer(request)[2] == "[400] nope"
    error = transport.infer(request)[2]
    assert error is not None and "closed the connection mid-response" in error
    assert accepted == [1]  # one keep-alive connection for all three
    thread.join(5)
    transport.close()
    listener.close()
