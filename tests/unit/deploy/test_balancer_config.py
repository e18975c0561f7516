"""haproxy.cfg generation, checked by the real haproxy binary (haproxy -c)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tritonpipe.deploy.balancer import Backend, BalancerOptions, render_config
from tritonpipe.errors import ServerError

BACKENDS = (Backend(name="replica-0", http_port=9000, grpc_port=9001),)


def haproxy_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.fail("haproxy not installed: run make setup")
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True)


def test_config_with_token_is_accepted_by_haproxy(tmp_path: Path) -> None:
    options = BalancerOptions(
        backends=BACKENDS, http_port=1, grpc_port=2, metrics_port=3, token="s3cret-token"
    )
    text = render_config(options, tmp_path / "sock", None)
    assert haproxy_check(text, tmp_path).returncode == 0
    assert "req.hdr(tritonpipe-token) -m str s3cret-token" in text
    assert "req.hdr(triton-grpc-protocol-tritonpipe-token) -m str s3cret-token" in text
    assert "option httpchk GET /v2/health/ready" in text
    assert "server replica-0 127.0.0.1:9001 proto h2 check port 9000" in text


def test_open_inference_guards_only_the_admin_endpoints(tmp_path: Path) -> None:
    closed = BalancerOptions(backends=BACKENDS, http_port=1, grpc_port=2, metrics_port=3,
                             token="s3cret-token")  # fmt: skip
    opened = BalancerOptions(backends=BACKENDS, http_port=1, grpc_port=2, metrics_port=3,
                             token="s3cret-token", open_inference=True)  # fmt: skip
    closed_text = render_config(closed, tmp_path / "sock", None)
    text = render_config(opened, tmp_path / "sock", None)
    assert haproxy_check(text, tmp_path).returncode == 0
    assert "if !token_ok !health" in closed_text and "acl admin" not in closed_text
    assert "if !token_ok admin" in text and "if !token_ok !health" not in text
    assert "acl admin path_beg /inference.GRPCInferenceService/Repository" in text
    assert "TRITONPIPE_TOKEN" in text  # the HTTP refusal says what to pass


def test_config_with_tls_is_accepted_by_haproxy(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    pem = tmp_path / "both.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    options = BalancerOptions(
        backends=BACKENDS, http_port=1, grpc_port=2, metrics_port=3, tls_cert=cert, tls_key=key
    )
    text = render_config(options, tmp_path / "sock", pem)
    assert haproxy_check(text, tmp_path).returncode == 0
    assert f"ssl crt {pem} alpn h2" in text


def test_a_wrong_config_is_refused_by_the_check(tmp_path: Path) -> None:
    options = BalancerOptions(
        backends=BACKENDS,
        http_port=1,
        grpc_port=2,
        metrics_port=3,
        extra=("backend broken", "    balance nonsense"),
    )
    result = haproxy_check(render_config(options, tmp_path / "sock", None), tmp_path)
    assert result.returncode != 0 and "balance" in result.stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token": "short"}, "token: use 8 to 256 characters"),
        ({"token": "has space in it"}, "token: use 8 to 256 characters"),
        ({"tls_cert": Path("cert.pem")}, "needs both a certificate"),
        (
            {"tls_cert": Path("/no/cert.pem"), "tls_key": Path("/no/key.pem")},
            "/no/cert.pem: TLS file not found",
        ),
        ({"backends": ()}, "at least one replica"),
    ],
)
def test_bad_options_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ServerError, match=message):
        BalancerOptions(**{"backends": BACKENDS, **kwargs})  # type: ignore[arg-type]
