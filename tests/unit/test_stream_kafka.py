"""The Kafka bus's job config, client options (SASL, TLS, ${VAR}) and commit points, without a
broker (the broker-facing behaviour is tested against Tansu in tests/integration/stream/)."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tritonpipe.errors import SpecError
from tritonpipe.stream import KafkaBus, load_config
from tritonpipe.stream.kafka_client import Offsets, client_options

JOB = """
pipeline: pipeline.yaml
bus:
  type: kafka
  bootstrap_servers: broker-1:9093,broker-2:9093
  topic: transactions
  output: scores
  dead_letter: dead
  client: {CLIENT}
inputs:
  x: {field: x}
"""


def _bus(tmp_path: Path, client: str = "{}") -> KafkaBus:
    path = tmp_path / "job.yaml"
    path.write_text(JOB.replace("{CLIENT}", client))
    bus = load_config(path).bus
    assert isinstance(bus, KafkaBus)
    return bus


def test_kafka_job_defaults(tmp_path: Path) -> None:
    bus = _bus(tmp_path)
    assert (bus.group, bus.partitions, bus.stream) == ("tritonpipe", 4, "transactions")
    assert client_options(bus) == {"bootstrap_servers": "broker-1:9093,broker-2:9093"}


def test_sasl_options_pass_through_with_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "s3cret")
    bus = _bus(
        tmp_path,
        "{security_protocol: SASL_PLAINTEXT, sasl_mechanism: SCRAM-SHA-512, "
        "sasl_plain_username: scorer, sasl_plain_password: '${KAFKA_PASSWORD}'}",
    )
    options = client_options(bus)
    assert options["sasl_plain_password"] == "s3cret"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    monkeypatch.delenv("KAFKA_PASSWORD")
    with pytest.raises(
        SpecError,
        match="bus.client.sasl_plain_password: environment variable KAFKA_PASSWORD is not set",
    ):
        client_options(bus)


def test_tls_files_become_an_ssl_context(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    bus = _bus(tmp_path, f"{{ssl_cafile: {cert}, ssl_certfile: {cert}, ssl_keyfile: {key}}}")
    options = client_options(bus)
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["security_protocol"] == "SSL" and "ssl_cafile" not in options
    missing = _bus(tmp_path, f"{{ssl_cafile: {tmp_path / 'none.pem'}}}")
    with pytest.raises(SpecError, match="bus.client: cannot build the TLS context"):
        client_options(missing)


def test_an_unknown_client_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        SpecError, match=r"bus.kafka.client: .*unknown option\(s\) \['sasl_pasword'\]"
    ):
        _bus(tmp_path, "{sasl_pasword: x}")


def test_the_commit_point_stays_at_the_lowest_event_in_hand() -> None:
    offsets = Offsets(retry_after_s=60)
    offsets.assign([0, 1])
    taken = [offsets.take(0, o, b"e") for o in range(5)] + [offsets.take(1, 7, b"f")]
    assert [m.id for m in taken if m] == ["0:0", "0:1", "0:2", "0:3", "0:4", "1:7"]
    assert offsets.to_commit() == {0: 0, 1: 7}
    offsets.ack(["0:1", "0:2", "0:4"])  # 0:0 and 0:3 still in hand (their batch failed)
    assert offsets.to_commit() == {0: 0, 1: 7}
    offsets.ack(["0:0", "1:7"])
    assert offsets.to_commit() == {0: 3, 1: 8}
    offsets.committed({0: 3, 1: 8})
    assert offsets.to_commit() == {}
    offsets.ack(["0:3"])
    assert offsets.to_commit() == {0: 5}


def test_unacknowledged_events_come_back_after_retry_after() -> None:
    offsets = Offsets(retry_after_s=0.05)
    offsets.assign([2])
    offsets.take(2, 10, b"e")
    offsets.take(2, 11, b"f")
    assert offsets.redeliveries(10) == []
    offsets.ack(["2:11"])
    time.sleep(0.06)
    again = offsets.redeliveries(10)
    assert [(m.id, m.body, m.deliveries) for m in again] == [("2:10", b"e", 2)]
    assert offsets.redeliveries(10) == []  # handed out again just now
    assert offsets.to_commit() == {2: 10}


def test_a_revoked_partition_is_neither_handed_out_nor_committed() -> None:
    offsets = Offsets(retry_after_s=60)
    offsets.assign([0, 1])
    offsets.take(0, 0, b"e")
    offsets.take(1, 0, b"f")
    offsets.revoke([1])
    assert offsets.take(1, 1, b"g") is None  # fetched before the rebalance: its new owner has it
    offsets.ack(["0:0", "1:0"])
    assert offsets.to_commit() == {0: 1}
    assert offsets.held([0, 1]) == 0
