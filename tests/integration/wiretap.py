"""A TCP proxy for tests: forwards a loopback port to the server and records every byte the
client sent, so a test can say what went over the wire (tensor bytes or only a region name)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

from tritonpipe.server.options import free_port


class Wiretap:
    """``with Wiretap(target_port) as tap:`` point a client at ``tap.port``; ``tap.sent()`` is
    what clients sent, ``tap.connections`` how many connections they opened (with the time of
    each). ``delay_s`` refuses connections (the port is closed) until that long after start."""

    def __init__(self, target_port: int, *, delay_s: float = 0.0) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.delay_s = delay_s
        self._sent: list[bytes] = []
        self._lock = threading.Lock()
        self.accepted: list[float] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def connections(self) -> int:
        return len(self.accepted)

    def sent(self) -> bytes:
        with self._lock:
            return b"".join(self._sent)

    def _listen(self) -> socket.socket:
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.05)
        self._listener = listener
        return listener

    def _serve(self) -> None:
        if self.delay_s and self._stop.wait(self.delay_s):
            return
        listener = self._listener or self._listen()
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(time.perf_counter())
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink, record in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, record), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while chunk := source.recv(1 << 16):
                if record:
                    with self._lock:
                        self._sent.append(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Wiretap:
        if not self.delay_s:
            self._listen()  # listening before a client is pointed at it
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
