"""gRPC without grpcio, for the load generator's concurrency mode: one HTTP/2 connection per
thread on a blocking socket, each request one HEADERS frame (prebuilt, the same bytes every
time) and one DATA frame carrying the prebuilt ``ModelInferRequest``, the response read frame by
frame until its stream ends. grpcio's Python call path costs about 0.3 ms of CPU per unary call,
twice and more what perf_analyzer's C++ client spends; on a machine whose cores the server
shares, that CPU is the server's throughput.

What HTTP/2 asks of a client is done here and nothing more: the preface and SETTINGS (a header
table of 0, so every header block the server sends can be decoded on its own and its decoding
cached; no push; stream windows as large as allowed), SETTINGS and PING acknowledged, flow
control both ways (DATA split to the server's windows and frame size; the connection's receive
window topped up), GOAWAY and RST_STREAM reported as errors. A call succeeds when its trailers
say ``grpc-status: 0``; any other status comes back as ``[CODE] message``, as grpcio reports it."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Mapping
from urllib.parse import unquote

import grpc
import hpack

from tritonpipe.client.raw_grpc import INFER_METHOD
from tritonpipe.errors import PerfError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0,
    1,
    3,
    4,
    6,
    7,
    8,
    9,
)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
TRAILERS_ONLY = END_STREAM | END_HEADERS
MAX_WINDOW = 2**31 - 1
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    head = struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream)
    return head + payload


def request_headers(authority: str, path: str, metadata: Mapping[str, str]) -> bytes:
    """One header block, valid on any connection: static-table or never-indexed fields only."""
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *((k.lower(), v) for k, v in metadata.items()),
    ]
    block: bytes = hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in fields])
    return block


class _Connection:
    """One HTTP/2 connection, used by one thread, one request at a time."""

    def __init__(self, host: str, port: int, timeout_s: float, headers: bytes) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = headers
        self.buffer = bytearray()
        self.stream = -1  # the last stream id used (clients use odd ones)
        self.send_window = 65535  # the connection's, as the server grants it
        self.stream_initial = 65535  # each new stream's, from the server's SETTINGS
        self.max_frame = 16384
        self.unacknowledged = 0  # bytes received since the receive window was topped up
        self.decoder = hpack.Decoder()
        self.decoded: dict[bytes, list[tuple[str, str]]] = {}
        settings = struct.pack(">HIHIHI", 1, 0, 2, 0, 4, MAX_WINDOW)
        self.sock.sendall(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535))
        )

    def _read(self, count: int) -> None:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PerfError("the server closed the connection")
            self.buffer += chunk

    def _frame(self) -> tuple[int, int, int, bytes]:
        self._read(9)
        length = int.from_bytes(self.buffer[:3], "big")
        kind, flags = self.buffer[3], self.buffer[4]
        stream = int.from_bytes(self.buffer[5:9], "big") & MAX_WINDOW
        self._read(9 + length)
        payload = bytes(self.buffer[9 : 9 + length])
        del self.buffer[: 9 + length]
        return kind, flags, stream, payload

    def _control(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        """Frames about the connection, whichever stream is waiting."""
        if kind == SETTINGS and not flags & ACK:
            for i in range(0, len(payload) - 5, 6):
                key, value = struct.unpack(">HI", payload[i : i + 6])
                if key == 4:
                    self.stream_initial = value
                elif key == 5:
                    self.max_frame = value
            self.sock.sendall(frame(SETTINGS, ACK, 0, b""))
        elif kind == PING and not flags & ACK:
            self.sock.sendall(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE and stream == 0:
            self.send_window += int.from_bytes(payload[:4], "big") & MAX_WINDOW
        elif kind == GOAWAY:
            code = int.from_bytes(payload[4:8], "big")
            raise PerfError(f"the server ended the connection (GOAWAY {code}: {payload[8:]!r})")

    def _fields(self, block: bytes) -> list[tuple[str, str]]:
        fields = self.decoded.get(block)
        if fields is None:
            fields = [(str(k), str(v)) for k, v in self.decoder.decode(block, raw=False)]
            self.decoded[block] = fields
        return fields

    def call(self, message: bytes) -> tuple[float, float, str | None]:
        self.stream += 2
        stream = self.stream
        body = b"\x00" + struct.pack(">I", len(message)) + message
        start = time.perf_counter()
        window = self.stream_initial
        out = [frame(HEADERS, END_HEADERS, stream, self.headers)]
        sent = 0
        while sent < len(body):
            room = min(self.send_window, window, self.max_frame, len(body) - sent)
            if room <= 0:  # wait for the server to open its windows
                self.sock.sendall(b"".join(out))
                out = []
                kind, flags, on, payload = self._frame()
                if kind == WINDOW_UPDATE and on == stream:
                    window += int.from_bytes(payload[:4], "big") & MAX_WINDOW
                elif kind == RST_STREAM and on == stream:
                    return 0.0, 0.0, f"[RST_STREAM {int.from_bytes(payload[:4], 'big')}]"
                elif kind == HEADERS and on == stream and flags & TRAILERS_ONLY == TRAILERS_ONLY:
                    # Refused before the whole request arrived (trailers only); the server
                    # resets the rest of the stream.
                    return 0.0, 0.0, _status(self._fields(_strip(flags, payload)))
                else:
                    self._control(kind, flags, on, payload)
                continue
            last = END_STREAM if sent + room == len(body) else 0
            out.append(frame(DATA, last, stream, body[sent : sent + room]))
            sent += room
            self.send_window -= room
            window -= room
        self.sock.sendall(b"".join(out))
        send = time.perf_counter() - start
        first = 0.0
        block = b""
        fields: list[tuple[str, str]] = []
        ended = False  # END_STREAM seen; with a header block, it ends at END_HEADERS
        while not ended or block:
            kind, flags, on, payload = self._frame()
            if on != stream or kind not in (HEADERS, CONTINUATION, DATA, RST_STREAM):
                self._control(kind, flags, on, payload)
                continue
            first = first or time.perf_counter()
            if kind == RST_STREAM:
                return send, 0.0, f"[RST_STREAM {int.from_bytes(payload[:4], 'big')}]"
            if kind == DATA:
                self._received(len(payload))
                ended = ended or bool(flags & END_STREAM)
                continue
            if kind == HEADERS:
                payload = _strip(flags, payload)
                ended = ended or bool(flags & END_STREAM)
            block += payload
            if flags & END_HEADERS:
                fields = self._fields(block)
                block = b""
        recv = time.perf_counter() - first
        return send, recv, _status(fields)

    def _received(self, count: int) -> None:
        """Keep the connection's receive window open (the stream's is the largest allowed,
        and each stream carries one response)."""
        self.unacknowledged += count
        if self.unacknowledged > MAX_WINDOW // 2:
            self.sock.sendall(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacknowledged)))
            self.unacknowledged = 0

    def close(self) -> None:
        self.sock.close()


def _strip(flags: int, payload: bytes) -> bytes:
    """A HEADERS frame's header block fragment, without padding and priority."""
    pad = 0
    if flags & PADDED:
        pad = payload[0]
        payload = payload[1:]
    if flags & PRIORITY:
        payload = payload[5:]
    return payload[: len(payload) - pad] if pad else payload


def _status(fields: list[tuple[str, str]]) -> str | None:
    """None for grpc-status 0, else grpcio's form of the error."""
    found = dict(fields)
    status = found.get("grpc-status")
    if status == "0":
        return None
    if status is None:
        return f"[UNKNOWN] no grpc-status in the response (HTTP status {found.get(':status')})"
    name = STATUS_NAMES.get(int(status), status)
    return f"[{name}] {unquote(found.get('grpc-message', ''))}"


class BlockingH2Grpc:
    """ModelInfer over one HTTP/2 connection per thread; ``infer`` sends prebuilt bytes."""

    def __init__(
        self, address: str, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.timeout_s = host, int(port), timeout_s
        self.headers = request_headers(address, INFER_METHOD, headers or {})
        self.local = threading.local()
        self.connections: list[_Connection] = []
        self.lock = threading.Lock()

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self.local, "conn", None)
        if conn is None or conn.stream > MAX_WINDOW - 4:
            conn = _Connection(self.host, self.port, self.timeout_s, self.headers)
            self.local.conn = conn
            with self.lock:
                self.connections.append(conn)
        return conn

    def infer(self, request: bytes) -> tuple[float, float, str | None]:
        try:
            return self._connection().call(request)
        except (OSError, PerfError, hpack.HPACKError) as exc:
            conn = getattr(self.local, "conn", None)
            if conn is not None:  # a half-read connection cannot be reused
                conn.close()
                self.local.conn = None
            return 0.0, 0.0, str(exc) or type(exc).__name__

    def close(self) -> None:
        with self.lock:
            for conn in self.connections:
                conn.close()
            self.connections.clear()
