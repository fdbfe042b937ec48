"""The dead-letter topic: malformed records are republished there with the reason and their origin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumer.ingest import DeadLetter

HEADER_REASON = "x-dlq-reason"
HEADER_DETAIL = "x-dlq-detail"
HEADER_TOPIC = "x-dlq-source-topic"
HEADER_PARTITION = "x-dlq-source-partition"
HEADER_OFFSET = "x-dlq-source-offset"


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The headers that say why a record was set aside and where it came from."""
    return [
        (HEADER_REASON, letter.reason.encode()),
        (HEADER_DETAIL, letter.detail[:1000].encode()),
        (HEADER_TOPIC, letter.topic.encode()),
        (HEADER_PARTITION, str(letter.partition).encode()),
        (HEADER_OFFSET, str(letter.offset).encode()),
    ]


class DeadLetterQueue:
    """Publishes dead letters with the original key and value bytes, and waits until Kafka has them."""

    def __init__(self, producer: Any, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def publish(self, letters: Sequence[DeadLetter], timeout_s: float) -> None:
        """Send every letter and block until all are acknowledged; raise the first Kafka error otherwise."""
        futures = [
            self._producer.send(
                self._topic,
                key=letter.key,
                value=letter.value,
                headers=dead_letter_headers(letter),
            )
            for letter in letters
        ]
        self._producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)

    def close(self, timeout_s: float) -> None:
        """Flush what is pending and close the producer."""
        self._producer.flush(timeout=timeout_s)
        self._producer.close(timeout=timeout_s)
