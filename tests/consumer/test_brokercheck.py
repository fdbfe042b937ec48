"""The Kafka start-up check and the clients' security arguments, without a broker (loopback sockets stand in for
listeners that misbehave in the ways a misconfiguration looks); tests/test_security.py runs it against the
real SASL_SSL listener."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from activeusers.errors import ConfigError
from activeusers.secret import Secret
from activeusers.settings import Settings
from consumer.brokercheck import (
    _mechanism_problem,
    _refusal,
    api_versions_request,
    check_broker,
    transport_problem,
)
from consumer.kafka import consumer_config, security_config


def test_plaintext_adds_only_the_protocol() -> None:
    assert security_config(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert consumer_config(Settings())["security_protocol"] == "PLAINTEXT"


def test_sasl_arguments_carry_the_revealed_password() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="svc",
        kafka_sasl_password=Secret("pw"),
    )
    assert security_config(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
    }


@pytest.mark.parametrize("check_hostname", [True, False])
def test_tls_context_verifies_the_broker(check_hostname: bool) -> None:
    config = security_config(Settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=check_hostname))
    context = config["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_unusable_certificate_files_name_the_setting(tmp_path: Path) -> None:
    garbage = tmp_path / "not.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^KAFKA_SSL_CAFILE="):
        security_config(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(garbage)))
    with pytest.raises(ConfigError, match=r"^KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE"):
        security_config(Settings(kafka_security_protocol="SSL", kafka_ssl_certfile=str(garbage)))


def test_api_versions_request_layout() -> None:
    request = api_versions_request()
    (size,) = struct.unpack(">i", request[:4])
    assert size == len(request) - 4
    api_key, version, _correlation, client_len = struct.unpack(">hhih", request[4:14])
    assert (api_key, version) == (18, 0)
    assert request[14:] == b"active-users-check" and client_len == len(b"active-users-check")


@pytest.fixture
def closing_listener() -> Iterator[int]:
    """A loopback listener that closes every connection after reading a little (as a TLS listener does with a
    plaintext request, or a plaintext listener with a TLS ClientHello)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def test_plaintext_client_on_a_listener_that_hangs_up(closing_listener: int) -> None:
    raw = socket.create_connection(("127.0.0.1", closing_listener), timeout=5)
    problem = transport_problem(Settings(), raw, f"127.0.0.1:{closing_listener}", None)
    assert problem is not None and problem.startswith("KAFKA_SECURITY_PROTOCOL=PLAINTEXT:")
    assert "SSL or SASL_SSL" in problem


def test_tls_client_on_a_plaintext_listener(closing_listener: int) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_bootstrap_servers=f"127.0.0.1:{closing_listener}")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"^KAFKA_SECURITY_PROTOCOL=SSL: .* did not complete a TLS handshake"):
        check_broker(settings, timeout_s=5)
    assert time.monotonic() - started < 5


def test_an_unreachable_broker_is_left_to_the_clients() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_broker(Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}"), timeout_s=2)  # no raise: it may be starting


def test_refusals_from_the_clients_log() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc", kafka_sasl_password=Secret("pw"),
        kafka_sasl_mechanism="SCRAM-SHA-512",
    )  # fmt: skip
    refused = "Bootstrap connection to bootstrap-0 failed: [Error 58] SaslAuthenticationFailedError: "
    refused += "SaslAuthenticationFailedError: Authentication failed due to invalid credentials (backoff 0.05 secs)"
    message = _refusal(settings, ["Attempting bootstrap", refused], 10)
    assert message == (
        "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: the broker refused the credentials of user 'svc' "
        "(SCRAM-SHA-512): Authentication failed due to invalid credentials"
    )
    mechanism = _refusal(settings, ["SaslHandshake failed: UnsupportedSaslMechanismError"], 10)
    assert mechanism == "KAFKA_SASL_MECHANISM=SCRAM-SHA-512 is not enabled on the broker's listener"
    silent = _refusal(settings, [], 10)
    assert silent is not None and silent.startswith("KAFKA_SECURITY_PROTOCOL=SASL_SSL: no authenticated connection")
    # kafka-python over TLS may read the broker's close before its error answer and log only the disconnection.
    closed = "<KafkaSSLTransport [127.0.0.1:19094<-58376]>: Abort (KafkaConnectionError: socket disconnected)"
    dropped = _refusal(settings, ["Attempting bootstrap", closed], 10)
    assert dropped is not None and dropped.startswith("KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: the broker closed")


def _answering_listener(answer: bytes) -> tuple[socket.socket, threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            (size,) = struct.unpack(">i", conn.recv(4))
            request = b""
            while len(request) < size:
                request += conn.recv(size - len(request))
            conn.sendall(struct.pack(">i", len(answer)) + answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_a_mechanism_the_listener_does_not_enable_is_named_with_those_it_does() -> None:
    correlation = struct.unpack(">i", api_versions_request()[8:12])[0]
    mechanisms = [b"SCRAM-SHA-512", b"PLAIN"]
    body = struct.pack(">ihi", correlation, 33, len(mechanisms))
    body += b"".join(struct.pack(">h", len(m)) + m for m in mechanisms)
    server, thread = _answering_listener(body)
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256")
    try:
        problem = _mechanism_problem(settings, server.getsockname()[:2], None, 5)
    finally:
        thread.join(5)
        server.close()
    assert problem == (
        "KAFKA_SASL_MECHANISM=SCRAM-SHA-256 is not enabled on the broker's listener (it enables SCRAM-SHA-512, PLAIN)"
    )


def test_bootstrap_servers_that_are_not_host_port() -> None:
    with pytest.raises(ConfigError, match=r"^KAFKA_BOOTSTRAP_SERVERS="):
        check_broker(Settings(kafka_bootstrap_servers="broker-without-port"))
