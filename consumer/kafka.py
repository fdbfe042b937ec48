"""Kafka client construction: the fetch, isolation and delivery settings ingestion relies on, kept in one place.

The benchmark's raw-read baseline builds its consumer from :func:`consumer_config` too, so "same client, same
fetch settings" holds by construction. Every Kafka client the project makes (consumer, producers, admin
clients) gets the connection security of :func:`security_config`.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from activeusers.errors import ConfigError
from activeusers.settings import Settings

# kafka-python's defaults fetch tiny batches; fetching about a megabyte per request keeps the broker round trips
# off the per-event cost while catching up. Below a megabyte per wait (live traffic) every fetch waits
# FETCH_MAX_WAIT_MS, which is then most of an event's way into Redis: a short wait keeps events fresh for a few more
# fetch requests a second on an idle topic (docs/benchmarks/ has the figures).
FETCH_MIN_BYTES = 1_000_000
FETCH_MAX_WAIT_MS = 20
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
# How long one blocking Kafka call (a dead-letter flush, the final commit, closing) may take.
KAFKA_TIMEOUT_S = 10.0
# How long one attempt to reach the brokers at start-up may take; the caller retries (and can stop) in between.
BOOTSTRAP_TIMEOUT_S = 5.0
# kafka-python's network client class, which the consumer builds through its `kafka_client` option.
_NETWORK_CLIENT = KafkaConsumer.DEFAULT_CONFIG["kafka_client"]
# How long a rebalance listener that waits for something gives kafka-python's IO loop before it looks again.
LISTENER_TICK_S = 0.05

Tick = Callable[[], Awaitable[object]]


def security_config(settings: Settings) -> dict[str, Any]:
    """The security keyword arguments of every kafka-python client (``KafkaConsumer``, ``KafkaProducer``,
    ``KafkaAdminClient``): protocol, SASL mechanism and credentials, and the TLS context of :func:`ssl_context`.

    Raises :class:`ConfigError` naming the setting when a certificate or key file cannot be loaded.
    """
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password.reveal()
    if protocol.endswith("SSL"):
        config["ssl_context"] = ssl_context(settings)
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The client TLS context for the broker: TLS 1.2 or later, the server verified against KAFKA_SSL_CAFILE (the
    system's CAs when unset) and its host name checked unless KAFKA_SSL_CHECK_HOSTNAME is false, and the client
    certificate when one is configured (mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.kafka_ssl_check_hostname
    try:
        if settings.kafka_ssl_cafile:
            context.load_verify_locations(settings.kafka_ssl_cafile)
        else:
            context.load_default_certs()
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile!r} holds no usable CA certificate ({exc})"
        ) from None
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(
                settings.kafka_ssl_certfile,
                settings.kafka_ssl_keyfile or None,
                password=settings.kafka_ssl_key_password.reveal() or None,
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE: the client certificate and key cannot be loaded (a PEM "
                f"certificate and its key, KAFKA_SSL_KEY_PASSWORD when the key is encrypted): {exc}"
            ) from None
    return context


def consumer_config(settings: Settings, *, group: bool = True) -> dict[str, Any]:
    """Keyword arguments for a ``KafkaConsumer`` that reads the activity topic in large batches."""
    config: dict[str, Any] = {
        **security_config(settings),
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_min_bytes": FETCH_MIN_BYTES,
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
        "max_poll_records": settings.batch_size,
        "reconnect_backoff_max_ms": 5000,
        # How soon the group notices a member that died without leaving (SIGKILL, lost host) and hands its
        # partitions to the others; the broker's group.min.session.timeout.ms (6 s by default) bounds it.
        "session_timeout_ms": int(settings.kafka_session_timeout_s * 1000),
        "heartbeat_interval_ms": min(3000, int(settings.kafka_session_timeout_s * 1000 / 3)),
        "request_timeout_ms": 30000,
        # Records of aborted transactions are never returned, and those of open ones only once committed.
        "isolation_level": settings.kafka_isolation_level.lower(),
        "bootstrap_timeout_ms": int(BOOTSTRAP_TIMEOUT_S * 1000),
    }
    config["group_id"] = settings.kafka_group_id if group else None
    return config


def new_consumer(settings: Settings, client_id: str, *, group: bool = True) -> Any:
    """A consumer (not yet subscribed) configured by :func:`consumer_config`.

    Raises ``KafkaTimeoutError`` when no broker answers within ``BOOTSTRAP_TIMEOUT_S``.
    """
    made: list[Any] = []

    def network_client(**config: Any) -> Any:
        made.append(_NETWORK_CLIENT(**config))
        return made[-1]

    try:
        return KafkaConsumer(client_id=client_id, kafka_client=network_client, **consumer_config(settings, group=group))
    except KafkaError:
        # The constructor has started the network client's I/O thread before it gave up; without this, every
        # retry while the brokers are down would leave one more thread behind.
        for client in made:
            client.close()
        raise


def new_producer(settings: Settings, client_id: str) -> Any:
    """A producer that waits for every in-sync replica, for dead letters and the event generator."""
    return KafkaProducer(
        **security_config(settings),
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        client_id=client_id,
        acks="all",
        linger_ms=5,
        retries=5,
        max_block_ms=10000,
        request_timeout_ms=15000,
    )


def listener_tick(kafka_consumer: Any) -> Tick:
    """A short wait (``LISTENER_TICK_S``) for a rebalance listener to await on the consumer's IO loop.

    kafka-python awaits an asynchronous listener on that loop, which also sends the heartbeats; the loop only
    understands its own awaitables (not asyncio's), and its sleep, which keeps the heartbeats going, is not
    public API: this is the one place that reaches for it.
    """
    net = kafka_consumer._net
    return lambda: net.sleep(LISTENER_TICK_S)
