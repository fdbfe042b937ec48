"""Recognising a fetch the Kafka client cannot decode, among the errors ``KafkaConsumer.poll()`` raises.

kafka-python (3.0.x) decodes fetched record batches lazily, inside ``poll()``. When a batch cannot be decoded
(the library of its compression codec is missing, its CRC check fails, its compressed payload is corrupt),
``poll()`` raises once; the partition's record iterator has died with the exception, yet the fetcher keeps it
as that partition's next records and leaves the position where it was. The next ``poll()`` then loops inside
kafka-python without end (it takes nothing from the dead iterator and tries again): the process burns a core,
never returns to its own loop, misses ``max.poll.interval.ms`` and never acts on SIGTERM. Such an error is
final for the process: it must not poll again. Every other Kafka error (a broker restarting, a coordinator
moving) is transient and waited out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kafka.errors import CorruptRecordError, KafkaError, UnsupportedCodecError


@dataclass(frozen=True, slots=True)
class UndecodableFetch:
    """Where the client stopped decoding, and why. ``offset`` is the first offset of the partition that was not
    returned: the consumer commits no further, so the group reads the partition again from there."""

    topic: str | None
    partition: int | None
    offset: int | None
    error: str

    @property
    def label(self) -> str:
        """``topic-partition`` (the metrics' partition label), or ``unknown``."""
        return f"{self.topic}-{self.partition}" if self.topic is not None else "unknown"

    def fields(self) -> dict[str, object]:
        """The structured fields of the log line that reports it."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "error": self.error}

    def reason(self) -> str:
        """One sentence for people: what cannot be decoded, where, and why."""
        where = f"{self.label} at offset {self.offset}" if self.topic is not None else "an unknown partition"
        return f"cannot decode the records of {where}: {self.error}"


def undecodable(exc: Exception, kafka_consumer: Any) -> UndecodableFetch | None:
    """The undecodable fetch that ``exc`` (raised by ``poll()``) reports, or None for a transient Kafka error.

    Any exception that is not a Kafka error comes from decoding too (a codec library's own error type, a
    malformed batch) when the fetcher was parsing a partition's records; anything else is re-raised.
    """
    if isinstance(exc, KafkaError) and not isinstance(exc, UnsupportedCodecError | CorruptRecordError):
        return None
    text = str(exc)
    error = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
    failed = _records_being_parsed(kafka_consumer)
    if failed is None:
        if not isinstance(exc, KafkaError):
            raise exc
        return UndecodableFetch(None, None, None, error)
    tp, offset = failed
    return UndecodableFetch(tp.topic, tp.partition, offset, error)


def _records_being_parsed(kafka_consumer: Any) -> tuple[Any, int] | None:
    # kafka-python keeps no public record of which partition failed (the codec error names none), so this reads
    # the fetcher's in-progress partition records: the partition and the offset its decoding had reached.
    fetcher = getattr(kafka_consumer, "_fetcher", None)
    records = getattr(fetcher, "_next_partition_records", None)
    tp = getattr(records, "topic_partition", None)
    offset = getattr(records, "next_fetch_offset", None)
    if tp is None or not isinstance(offset, int):
        return None
    return tp, offset
