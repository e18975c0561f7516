"""The balancer in front of two real replicas: spreading, the token, TLS, loopback-only replicas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.counted import wait_for
from tests.integration.deploy.conftest import TOKEN, X
from tritonpipe.client import Client
from tritonpipe.deploy.balancer import Backend, Balancer, BalancerOptions
from tritonpipe.deploy.replicas import ReplicaSet
from tritonpipe.errors import ClientError, Unauthorized


def successes(fleet: ReplicaSet) -> list[int]:
    counts = []
    for server in fleet.servers:
        stats = server.statistics()["model_stats"]
        counts.append(
            sum(m["inference_stats"]["success"]["count"] for m in stats if m["name"] == "affine")
        )  # type: ignore[index,union-attr]
    return counts


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_traffic_reaches_every_replica(fleet: ReplicaSet, protocol: str) -> None:
    assert fleet.balancer is not None
    url = fleet.balancer.http_url if protocol == "http" else fleet.balancer.grpc_url
    before = successes(fleet)
    with Client(url, token=TOKEN) as client:
        for _ in range(20):
            y = client.infer("affine", {"x": X})["y"]
            np.testing.assert_allclose(y, X * 2 + 1)
    after = wait_for(lambda: successes(fleet), lambda counts: sum(counts) - sum(before) >= 20)
    gained = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(gained) == 20
    assert all(g > 0 for g in gained), f"requests per replica: {gained}"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_request_without_token_is_refused_at_the_balancer(fleet: ReplicaSet, protocol: str) -> None:
    assert fleet.balancer is not None
    url = fleet.balancer.http_url if protocol == "http" else fleet.balancer.grpc_url
    before = successes(fleet)
    for token in (None, "wrong-token-123"):
        with Client(url, token=token, retries=0) as client, pytest.raises(Unauthorized) as info:
            client.infer("affine", {"x": X})
        if protocol == "http":
            assert "refused by the balancer" in str(info.value)
        else:
            assert "401" in str(info.value)
        assert "--token" in str(info.value) and "TRITONPIPE_TOKEN" in str(info.value)
    assert successes(fleet) == before
    # Health stays open, as on Triton itself, for outer probes.
    with Client(url, retries=0) as client:
        assert client.is_ready()


def test_replicas_listen_on_loopback_and_require_the_token(fleet: ReplicaSet) -> None:
    for server in fleet.servers:
        assert server.options.host == "127.0.0.1"
        assert "--http-address=127.0.0.1" in server.options.arguments()
        with Client(server.http_url, retries=0) as client, pytest.raises(Unauthorized):
            client.infer("affine", {"x": X})


def test_tls_end_to_end(fleet: ReplicaSet, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    backends = tuple(
        Backend(
            name=fleet.replica_name(i), http_port=s.options.http_port, grpc_port=s.options.grpc_port
        )
        for i, s in enumerate(fleet.servers)
    )
    options = BalancerOptions(backends=backends, token=TOKEN, tls_cert=cert, tls_key=key)
    with Balancer(options, tmp_path) as balancer:
        address = f"127.0.0.1:{balancer.options.http_port}"
        assert balancer.http_url.startswith("https://")
        http = httpclient.InferenceServerClient(
            address,
            ssl=True,
            ssl_context_factory=lambda: __import__("ssl").create_default_context(cafile=str(cert)),
        )
        tensor = httpclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(X)
        result = http.infer("affine", [tensor], headers={"tritonpipe-token": TOKEN})
        np.testing.assert_allclose(result.as_numpy("y"), X * 2 + 1)
        http.close()

        grpc = grpcclient.InferenceServerClient(
            f"127.0.0.1:{balancer.options.grpc_port}", ssl=True, root_certificates=str(cert)
        )
        tensor = grpcclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(X)
        result = grpc.infer(
            "affine", [tensor], headers={"triton-grpc-protocol-tritonpipe-token": TOKEN}
        )
        np.testing.assert_allclose(result.as_numpy("y"), X * 2 + 1)
        with pytest.raises(InferenceServerException, match="401|Unauthenticated|UNAUTHENTICATED"):
            grpc.infer("affine", [tensor])
        grpc.close()

        # Cleartext to the TLS port gets no answer from Triton.
        with (
            Client(f"http://{address}", token=TOKEN, retries=0, timeout_s=5) as client,
            pytest.raises(ClientError),
        ):
            client.infer("affine", {"x": X})
