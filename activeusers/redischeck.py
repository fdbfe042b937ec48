"""The start-up check of the Redis settings (the sibling of :mod:`consumer.brokercheck`): one PING, and when it
fails, which setting the failure points at (the credentials, the certificates, TLS itself, cluster mode).
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse

import redis
from redis.exceptions import RedisClusterException

from activeusers.connections import REDIS_ERRORS, SyncClient, redis_client
from activeusers.errors import ConfigError
from activeusers.settings import Settings, redacted_url


def check_redis(settings: Settings) -> None:
    """One PING at start-up (bounded by REDIS_TIMEOUT): raise :class:`ConfigError` naming the setting when the
    credentials, the certificates or TLS itself do not match the server. A server that is merely unreachable
    is left to the caller's retries (it may be starting)."""
    client: SyncClient | None = None
    try:
        client = redis_client(settings)  # a cluster client reads the slot map here
        client.ping()
    except REDIS_ERRORS as exc:
        problem = redis_config_problem(settings, exc)
        if problem is None and settings.redis_url.startswith("rediss://"):
            if _answers_plaintext(settings):
                problem = f"REDIS_URL: Redis at {redacted_url(settings.redis_url)} does not speak TLS; use redis://"
            elif (refusal := _tls_refusal(settings)) is not None:
                problem = redis_config_problem(settings, redis.ConnectionError(refusal))
        if problem is not None:
            raise ConfigError(problem) from None
    finally:
        if client is not None:
            client.close()


def redis_config_problem(settings: Settings, exc: BaseException) -> str | None:
    """What a failed first command says about the configuration (``None``: nothing, the server is just down)."""
    if isinstance(exc, RedisClusterException) and exc.__cause__ is not None:
        exc = exc.__cause__  # the cluster client wraps what its seed node answered
    where = f"Redis at {redacted_url(settings.redis_url)}"
    text = str(exc)
    tls = settings.redis_url.startswith("rediss://")
    has_password = bool(settings.redis_password) or "@" in settings.redis_url.split("://", 1)[-1].split("/", 1)[0]
    if "Cluster mode is not enabled" in text:
        return f"REDIS_CLUSTER: {where} is not a Redis Cluster node; unset REDIS_CLUSTER for a single server"
    if "NOAUTH" in text or (isinstance(exc, redis.AuthenticationError) and not has_password):
        return f"REDIS_PASSWORD: {where} requires authentication; set REDIS_USERNAME and REDIS_PASSWORD"
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text:
        return f"REDIS_USERNAME/REDIS_PASSWORD: {where} refused the credentials ({_first_line(text)})"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        if "mismatch" in text:
            return f"REDIS_SSL_CHECK_HOSTNAME: the certificate of {where} is not for its host ({_first_line(text)})"
        return f"REDIS_SSL_CA_FILE: the certificate of {where} is not signed by a trusted CA ({_first_line(text)})"
    if tls and ("PEM lib" in text or "KEY_VALUES_MISMATCH" in text or "bad decrypt" in text):
        return (
            "REDIS_SSL_CERT_FILE/REDIS_SSL_KEY_FILE: the client certificate and key cannot be loaded (a PEM "
            f"certificate and its key, REDIS_SSL_KEY_PASSWORD when the key is encrypted): {_first_line(text)}"
        )
    if tls and ("CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text):
        return f"REDIS_SSL_CERT_FILE/REDIS_SSL_KEY_FILE: {where} requires a client certificate it trusts"
    if tls and ("WRONG_VERSION_NUMBER" in text or "record layer" in text):
        return f"REDIS_URL: {where} does not speak TLS; use redis:// for a plaintext server"
    if not tls and ("Connection reset by peer" in text or "Connection closed by server" in text):
        return f"REDIS_URL: {where} closed the connection on a plaintext command; a TLS port needs rediss://"
    return None


def _tls_refusal(settings: Settings) -> str | None:
    """The TLS alert a ``rediss://`` server sends right after the handshake, if any.

    With TLS 1.3 a server refuses a missing or untrusted client certificate only after the client's handshake
    is done, so a client that writes first may see a bare EOF instead; waiting for the server's first bytes
    shows the alert itself."""
    url = urllib.parse.urlsplit(settings.redis_url)
    host = url.hostname or "localhost"
    try:
        context = ssl.create_default_context(cafile=settings.redis_ssl_ca_file or None)
        context.check_hostname = settings.redis_ssl_check_hostname
        if settings.redis_ssl_cert_file:
            context.load_cert_chain(
                settings.redis_ssl_cert_file,
                settings.redis_ssl_key_file or None,
                password=settings.redis_ssl_key_password.reveal() or None,
            )
        with (
            socket.create_connection((host, url.port or 6379), timeout=settings.redis_timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.settimeout(min(1.0, settings.redis_timeout_s))
            sock.recv(1)
    except ssl.SSLError as exc:
        return str(exc)
    except OSError:
        return None
    return None


def _answers_plaintext(settings: Settings) -> bool:
    """Whether the server of a ``rediss://`` URL answers a plaintext PING (so it is not a TLS port)."""
    url = urllib.parse.urlsplit(settings.redis_url)
    try:
        with socket.create_connection(
            (url.hostname or "localhost", url.port or 6379), timeout=settings.redis_timeout_s
        ) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH", b"-ERR"))
    except OSError:
        return False


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no detail"
