"""Whether the broker is up: a Metadata request over a raw socket, framed by the Kafka wire helpers it shares
with the service's broker check (``consumer/kafkawire.py``)."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

from consumer import kafkawire
from teststack.layout import HOST

# Metadata: api key 3; v4 is the oldest version Kafka 4.x still accepts.
_METADATA = 3
_METADATA_VERSION = 4


def encode_metadata_request(correlation_id: int, client_id: str = "dev-stack") -> bytes:
    """A Kafka Metadata v4 request for all topics, with its size prefix."""
    body = struct.pack(">ib", -1, 0)  # topics = null (all), allow_auto_topic_creation = false
    return kafkawire.encode_request(_METADATA, _METADATA_VERSION, correlation_id, client_id.encode(), body)


@dataclass(frozen=True)
class MetadataAnswer:
    """The part of a Metadata v4 response that tells whether the broker is usable."""

    correlation_id: int
    brokers: tuple[tuple[int, str, int], ...]
    cluster_id: str | None
    controller_id: int


def decode_metadata_response(payload: bytes) -> MetadataAnswer:
    """Decode a Metadata v4 response (without its 4-byte size prefix) up to the controller id."""
    answer = kafkawire.Decoder(payload)
    correlation_id = answer.int32()
    answer.int32()  # throttle_time_ms
    brokers = []
    for _ in range(max(answer.int32(), 0)):
        node_id = answer.int32()
        host = answer.string() or ""
        port = answer.int32()
        answer.string()  # rack
        brokers.append((node_id, host, port))
    cluster_id = answer.string()
    controller_id = answer.int32()
    return MetadataAnswer(correlation_id, tuple(brokers), cluster_id, controller_id)


def kafka_metadata(port: int, timeout: float = 3.0) -> MetadataAnswer:
    """Ask the broker on ``127.0.0.1:port`` for its metadata over a raw socket."""
    correlation_id = int(time.monotonic() * 1000) & 0x7FFFFFFF
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(encode_metadata_request(correlation_id))
        answer = decode_metadata_response(kafkawire.recv_frame(sock))
    if answer.correlation_id != correlation_id:
        raise ConnectionError(f"bad correlation id {answer.correlation_id} != {correlation_id}")
    return answer


def kafka_ready(port: int, timeout: float = 3.0) -> str | None:
    """``None`` when the broker answers metadata with itself registered and a controller, else why not."""
    try:
        answer = kafka_metadata(port, timeout)
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if not answer.brokers:
        return "metadata lists no broker yet"
    if answer.controller_id < 0:
        return "metadata has no controller yet"
    return None
