"""Which errors out of poll() mean "this fetch can never be decoded", and where the client stopped."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kafka.errors import (
    CorruptRecordError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    UnsupportedCodecError,
)
from kafka.structs import TopicPartition

from consumer.undecodable import UndecodableFetch, undecodable


def _consumer_parsing(topic: str, partition: int, offset: int) -> SimpleNamespace:
    """What kafka-python's consumer looks like after a batch of that partition failed to decode."""
    records = SimpleNamespace(topic_partition=TopicPartition(topic, partition), next_fetch_offset=offset)
    return SimpleNamespace(_fetcher=SimpleNamespace(_next_partition_records=records))


@pytest.mark.parametrize(
    "error",
    [KafkaConnectionError("111 ECONNREFUSED"), KafkaTimeoutError("no coordinator"), NodeNotReadyError("1")],
)
def test_transient_kafka_errors_are_not_undecodable(error):
    assert undecodable(error, _consumer_parsing("t", 0, 5)) is None


def test_a_missing_codec_names_topic_partition_and_offset():
    error = UnsupportedCodecError("Libraries for lz4 compression codec not found")
    found = undecodable(error, _consumer_parsing("events", 2, 1234))
    assert found == UndecodableFetch(
        "events", 2, 1234, "UnsupportedCodecError: Libraries for lz4 compression codec not found"
    )
    assert found.label == "events-2"
    assert found.reason() == (
        "cannot decode the records of events-2 at offset 1234: "
        "UnsupportedCodecError: Libraries for lz4 compression codec not found"
    )


def test_a_corrupt_batch_is_undecodable_even_when_the_partition_is_unknown():
    found = undecodable(CorruptRecordError("Record batch failed crc check"), SimpleNamespace())
    assert found is not None
    assert (found.topic, found.partition, found.offset, found.label) == (None, None, None, "unknown")
    assert found.reason() == "cannot decode the records of an unknown partition: " + found.error
    assert "CorruptRecordError" in found.error


def test_a_codec_library_error_while_parsing_is_undecodable():
    found = undecodable(RuntimeError("LZ4F_decompress failed"), _consumer_parsing("t", 0, 7))
    assert found is not None
    assert (found.label, found.offset, found.error) == ("t-0", 7, "RuntimeError: LZ4F_decompress failed")


def test_any_other_exception_is_not_hidden():
    with pytest.raises(AttributeError, match="bug"):
        undecodable(AttributeError("a bug"), SimpleNamespace(_fetcher=SimpleNamespace(_next_partition_records=None)))
