"""The start-up check of the Kafka connection: one bounded attempt that turns a misconfigured connection into one
:class:`ConfigError` line naming the setting, instead of a client that retries silently.

kafka-python retries a failed bootstrap (refused credentials, an untrusted certificate, TLS against a plaintext
listener or the reverse) until its timeout and then reports only "Unable to bootstrap". So the transport is
checked here first with the standard library (TCP, the TLS handshake with the very context the clients get, an
ApiVersions request, which every listener answers before authentication), and SASL then with a real client
whose log records say why the broker refused it. A broker that is merely unreachable is not an error here: the
clients wait for it as they always do.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from activeusers.errors import ConfigError
from activeusers.settings import Settings
from consumer import kafkawire
from consumer.kafka import KAFKA_TIMEOUT_S, security_config

# ApiVersions v0: api key 18, version 0, a correlation id, a client id; empty body. Every broker since 0.10
# answers it on every listener, before SASL.
_API_VERSIONS = 18
# SaslHandshake v1: api key 17; its answer lists the listener's enabled mechanisms (error 33 when the requested one
# is not among them), before any credentials are sent.
_SASL_HANDSHAKE = 17
_UNSUPPORTED_SASL_MECHANISM = 33
_CORRELATION_ID = 0x61750001
_CLIENT_ID = b"active-users-check"
# OpenSSL's verification codes for a certificate that is not for the host (name or IP address).
_HOST_MISMATCH = {62, 64}


def check_broker(settings: Settings, timeout_s: float = KAFKA_TIMEOUT_S) -> None:
    """Raise :class:`ConfigError` when the first bootstrap server refuses the configured security."""
    security = security_config(settings)  # a certificate or key file that cannot be loaded fails here
    host, port = _first_server(settings.kafka_bootstrap_servers)
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return  # unreachable: the clients wait for it
    problem = transport_problem(settings, raw, f"{host}:{port}", security.get("ssl_context"))
    if problem is None and settings.kafka_security_protocol.startswith("SASL_"):
        problem = _mechanism_problem(settings, (host, port), security.get("ssl_context"), timeout_s)
        problem = problem or _sasl_problem(settings, security, timeout_s)
    if problem is not None:
        raise ConfigError(problem)


def _mechanism_problem(
    settings: Settings, address: tuple[str, int], context: ssl.SSLContext | None, timeout_s: float
) -> str | None:
    """Whether the listener enables ``KAFKA_SASL_MECHANISM``, from its SaslHandshake answer (``None`` when it does,
    or when the exchange itself fails: the client attempt that follows says why)."""
    mechanism = settings.kafka_sasl_mechanism.encode()
    try:
        with socket.create_connection(address, timeout=timeout_s) as raw:
            sock = context.wrap_socket(raw, server_hostname=address[0]) if context is not None else raw
            with sock:
                handshake = kafkawire.encode_string(mechanism)
                sock.sendall(kafkawire.encode_request(_SASL_HANDSHAKE, 1, _CORRELATION_ID, _CLIENT_ID, handshake))
                size, correlation_id = kafkawire.recv_response_header(sock)
                if correlation_id != _CORRELATION_ID or size < 6:
                    return None
                answer = kafkawire.Decoder(kafkawire.recv_exact(sock, size - 4))
                error, count = answer.int16(), answer.int32()
                enabled = [answer.string(errors="replace") or "" for _ in range(max(0, min(count, 64)))]
    except (OSError, struct.error):
        return None
    if error != _UNSUPPORTED_SASL_MECHANISM:
        return None
    return (
        f"KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism} is not enabled on the broker's listener "
        f"(it enables {', '.join(enabled) or 'none'})"
    )


def api_versions_request() -> bytes:
    """An ApiVersions v0 request with its size prefix."""
    return kafkawire.encode_request(_API_VERSIONS, 0, _CORRELATION_ID, _CLIENT_ID)


def transport_problem(
    settings: Settings, raw: socket.socket, address: str, context: ssl.SSLContext | None
) -> str | None:
    """Why the broker on the connected socket ``raw`` refuses the configured transport (plaintext or TLS), or
    ``None``; closes ``raw``."""
    where = f"the broker at {address}"
    protocol = settings.kafka_security_protocol
    with raw:
        sock: socket.socket = raw
        if context is not None:
            try:
                sock = context.wrap_socket(raw, server_hostname=address.rpartition(":")[0].strip("[]"))
            except ssl.SSLCertVerificationError as exc:
                return _verification_problem(settings, where, exc)
            except (ssl.SSLError, OSError) as exc:
                return (
                    f"KAFKA_SECURITY_PROTOCOL={protocol}: {where} did not complete a TLS handshake "
                    f"({_reason(exc)}); is it a plaintext listener (PLAINTEXT or SASL_PLAINTEXT)?"
                )
        try:
            sock.sendall(api_versions_request())
            size, correlation_id = kafkawire.recv_response_header(sock)
        except ssl.SSLError as exc:
            return _client_certificate_problem(where, exc)
        except (OSError, struct.error) as exc:
            # With TLS 1.3 the refusal of a client certificate comes after the handshake: a write may meet a bare
            # EOF while the server's alert still waits to be read.
            alert = _pending_alert(sock) if context is not None else None
            if alert is not None:
                return _client_certificate_problem(where, alert)
            if context is None:
                return (
                    f"KAFKA_SECURITY_PROTOCOL={protocol}: {where} closed the connection on a plaintext request "
                    f"({_reason(exc)}); a TLS listener needs SSL or SASL_SSL"
                )
            return f"KAFKA_BOOTSTRAP_SERVERS: {where} did not answer a Kafka request over TLS ({_reason(exc)})"
        finally:
            if sock is not raw:
                sock.close()
    if correlation_id != _CORRELATION_ID or size < 4:
        return f"KAFKA_BOOTSTRAP_SERVERS: {where} did not answer like a Kafka broker"
    return None


def _client_certificate_problem(where: str, exc: ssl.SSLError) -> str:
    return (
        f"KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE: {where} refused the TLS connection ({_reason(exc)}); "
        "it needs a client certificate signed by a CA it trusts"
    )


def _pending_alert(sock: socket.socket) -> ssl.SSLError | None:
    try:
        sock.recv(64)
    except ssl.SSLError as exc:
        return exc
    except OSError:
        return None
    return None


def _verification_problem(settings: Settings, where: str, exc: ssl.SSLCertVerificationError) -> str:
    if exc.verify_code in _HOST_MISMATCH:
        return (
            f"KAFKA_SSL_CHECK_HOSTNAME: the certificate of {where} is not for that host ({exc.verify_message}); "
            "connect by a name the certificate lists"
        )
    trusted = f"KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile!r}" if settings.kafka_ssl_cafile else "the system's CAs"
    return f"KAFKA_SSL_CAFILE: the certificate of {where} is not signed by {trusted} ({exc.verify_message})"


_REFUSED = ("SaslAuthenticationFailedError", "UnsupportedSaslMechanism")


class _Records(logging.Handler):
    """Keeps the messages kafka-python logs while the check runs (they say why a connection failed) and signals
    the first refusal."""

    def __init__(self, refused: threading.Event) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._refused = refused

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if any(marker in message for marker in _REFUSED):
            self._refused.set()


def _sasl_problem(settings: Settings, security: dict[str, Any], timeout_s: float) -> str | None:
    """Why the broker refuses the SASL credentials, from a real client's bootstrap.

    kafka-python retries a refused authentication until its bootstrap timeout: the attempt runs on a thread and
    the first refusal it logs answers at once. Its own log lines are kept out of the service's log until the
    attempt ends (the one line that matters is the error raised).
    """
    kafka_log = logging.getLogger("kafka")
    finished = threading.Event()
    records = _Records(finished)
    propagate, level = kafka_log.propagate, kafka_log.level
    kafka_log.addHandler(records)
    kafka_log.propagate = False
    kafka_log.setLevel(logging.INFO)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            admin = KafkaAdminClient(
                **security,
                bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
                client_id=_CLIENT_ID.decode(),
                bootstrap_timeout_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
            )
        except KafkaError as exc:
            outcome.append(exc)
        else:
            admin.close()
            outcome.append(None)
        finally:
            kafka_log.removeHandler(records)
            kafka_log.propagate = propagate
            kafka_log.setLevel(level)
            finished.set()

    threading.Thread(target=attempt, name="kafka-check", daemon=True).start()
    finished.wait(timeout_s + KAFKA_TIMEOUT_S)
    if outcome and outcome[0] is None:
        return None
    return _refusal(settings, list(records.messages), timeout_s)


def _refusal(settings: Settings, messages: list[str], timeout_s: float) -> str | None:
    mechanism = settings.kafka_sasl_mechanism
    for message in messages:
        if "SaslAuthenticationFailedError" in message:
            detail = message.rsplit("SaslAuthenticationFailedError:", 1)[-1].split(" (backoff", 1)[0].strip(" )")
            return (
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: the broker refused the credentials of user "
                f"{settings.kafka_sasl_username!r} ({mechanism}): {detail}"
            )
        if "UnsupportedSaslMechanism" in message:
            return f"KAFKA_SASL_MECHANISM={mechanism} is not enabled on the broker's listener"
    # The transport and the mechanism were accepted just before, so a broker that closes every connection during
    # authentication is refusing the credentials (kafka-python 3.0.12 over TLS may read the close before the
    # broker's error answer, and then logs only the disconnection).
    if any("socket disconnected" in m for m in messages):
        return (
            f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: the broker closed every connection while authenticating "
            f"user {settings.kafka_sasl_username!r} ({mechanism}): it refuses the credentials"
        )
    return (
        f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}: no authenticated connection to "
        f"{settings.kafka_bootstrap_servers} within {timeout_s:.0f} s"
        + (f" ({messages[-1].strip()[-200:]})" if messages else "")
    )


def _first_server(servers: str) -> tuple[str, int]:
    first = servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        return host.strip("[]") or "localhost", int(port)
    except ValueError:
        raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS={servers!r}: expected host:port[,host:port...]") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__
