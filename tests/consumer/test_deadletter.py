"""Dead-letter headers and publishing (pure logic, with an in-memory producer)."""

from __future__ import annotations

import pytest

from consumer.deadletter import DeadLetterQueue, dead_letter_headers
from consumer.ingest import DeadLetter


def test_headers_carry_reason_detail_and_origin():
    letter = DeadLetter("user-activity", 2, 41, b"k", b"x", "not_json", "value is not UTF-8 JSON")
    assert dead_letter_headers(letter) == [
        ("x-dlq-reason", b"not_json"),
        ("x-dlq-detail", b"value is not UTF-8 JSON"),
        ("x-dlq-source-topic", b"user-activity"),
        ("x-dlq-source-partition", b"2"),
        ("x-dlq-source-offset", b"41"),
    ]


def test_detail_is_truncated_to_keep_headers_small():
    letter = DeadLetter("t", 0, 0, None, None, "oversized", "x" * 5000)
    detail = dict(dead_letter_headers(letter))["x-dlq-detail"]
    assert len(detail) == 1000


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self._error = error

    def get(self, timeout: float) -> None:
        if self._error:
            raise self._error


class _Producer:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple] = []
        self.flushed = 0
        self._error = error

    def send(self, topic, key, value, headers):
        self.sent.append((topic, key, value, headers))
        return _Future(self._error)

    def flush(self, timeout: float) -> None:
        self.flushed += 1


def test_publish_sends_original_bytes_and_waits_for_acknowledgement():
    producer = _Producer()
    letters = [DeadLetter("t", 0, i, b"k%d" % i, b"v%d" % i, "not_json", "d") for i in range(3)]
    DeadLetterQueue(producer, "t.dlq").publish(letters, timeout_s=1)
    assert [(s[0], s[1], s[2]) for s in producer.sent] == [
        ("t.dlq", b"k0", b"v0"),
        ("t.dlq", b"k1", b"v1"),
        ("t.dlq", b"k2", b"v2"),
    ]
    assert producer.flushed == 1


def test_publish_raises_when_kafka_refuses_a_letter():
    from kafka.errors import KafkaTimeoutError

    producer = _Producer(KafkaTimeoutError("no broker"))
    with pytest.raises(KafkaTimeoutError):
        DeadLetterQueue(producer, "t.dlq").publish([DeadLetter("t", 0, 0, None, b"v", "r", "d")], 1)
