"""Blocking twins of the raw transports, for concurrency mode: one thread per request in
flight, each sending prebuilt bytes and waiting on its own connection. The waits release the
GIL, and no event loop runs between a response and the next request, so the client spends
about what perf_analyzer's C++ threads spend per request (an asyncio loop costs twice that on
a 2-core machine, where the client's CPU is the server's). gRPC's twin is
tritonpipe.client.raw_h2 (HTTP/2 on a socket per thread: grpcio's call path alone costs twice
perf_analyzer's CPU per request)."""

from __future__ import annotations

import json
import socket
import threading
import time

from tritonpipe.client.raw_http import parse_head
from tritonpipe.errors import PerfError


class BlockingHttp:
    """One keep-alive connection per thread."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.local = threading.local()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()

    def _connection(self) -> tuple[socket.socket, bytearray]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = (sock, bytearray())
            self.local.conn = conn
            with self.lock:
                self.sockets.append(sock)
        return conn

    def _drop(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn[0].close()
            self.local.conn = None

    def infer(self, request: bytes) -> tuple[float, float, str | None]:
        try:
            sock, buffer = self._connection()
            start = time.perf_counter()
            sock.sendall(request)
            send = time.perf_counter() - start
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                chunk = sock.recv(65536)
                if not chunk:
                    raise PerfError("the server closed the connection")
                buffer += chunk
            before_body = time.perf_counter()
            status, length, keep = parse_head(bytes(buffer[: end + 4]))
            del buffer[: end + 4]
            while len(buffer) < length:
                chunk = sock.recv(max(65536, length - len(buffer)))
                if not chunk:
                    raise PerfError("the server closed the connection mid-response")
                buffer += chunk
            body = bytes(buffer[:length])
            del buffer[:length]
            recv = time.perf_counter() - before_body
        except (OSError, PerfError) as exc:
            self._drop()  # a half-read connection cannot be reused
            return 0.0, 0.0, str(exc) or type(exc).__name__
        if not keep:
            self._drop()
        if status != 200:
            try:
                message = str(json.loads(body).get("error", body[:200]))
            except (ValueError, AttributeError):
                message = body[:200].decode(errors="replace")
            return send, recv, f"[{status}] {message}"
        return send, recv, None

    def close(self) -> None:
        with self.lock:
            for sock in self.sockets:
                sock.close()
            self.sockets.clear()
