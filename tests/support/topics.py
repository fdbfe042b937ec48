"""Kafka topics in tests: producing records (kafka-python and kcat), reading them back, and a group's offsets."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from tests.support.environment import require_tool
from tests.support.events import Sent


def produce(bootstrap: str, topic: str, records: Iterable[Sent], security: Mapping[str, Any] | None = None) -> int:
    """Send every record and wait until Kafka acknowledged all of them; returns how many.

    ``security`` (here and below): kafka-python security arguments, e.g. ``consumer.kafka.security_config(...)``.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        **(security or {}), bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2_000_000
    )
    count = 0
    try:
        futures = [producer.send(topic, key=r.key, value=r.value) for r in records]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
            count += 1
    finally:
        producer.close(timeout=10)
    return count


class Feeder(threading.Thread):
    """Produces a stream in small chunks at a steady pace; a chunk is re-sent until Kafka acknowledges all of it
    (duplicates are harmless: they are what an at-least-once producer does). ``stop`` ends it after the chunk
    being sent; ``sent[:done]`` is what it produced."""

    def __init__(self, bootstrap: str, topic: str, sent: list[Sent], chunk: int = 200, pause_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.sent = bootstrap, topic, sent
        self.chunk, self.pause_s = chunk, pause_s
        self.done = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            for start in range(0, len(self.sent), self.chunk):
                if self._halt.is_set():
                    return
                deadline = time.monotonic() + 120
                while True:
                    try:
                        produce(self.bootstrap, self.topic, self.sent[start : start + self.chunk])
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
                self.done = min(len(self.sent), start + self.chunk)
                time.sleep(self.pause_s)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        """Produce no further chunk, and wait for the one being sent."""
        self._halt.set()
        self.finish()

    def finish(self, timeout_s: float = 180) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "the feeder did not finish"
        assert self.error is None, repr(self.error)


def kcat_produce(
    bootstrap: str, topic: str, records: Iterable[Sent], codec: str, headers: Mapping[str, str] | None = None
) -> None:
    """Publish with kcat (librdkafka, not kafka-python): one line per record, ``key:value``, batched for 100 ms
    so that ``codec`` (``none``, ``gzip``, ``snappy``, ``lz4``, ``zstd``) really compresses; an empty value is
    sent as null (a tombstone)."""
    lines = []
    for record in records:
        key, value = record.key or b"", record.value or b""
        assert b":" not in key and b"\n" not in key + value, "kcat splits records at newlines, keys at ':'"
        lines.append(key + b":" + value + b"\n")
    command = [require_tool("kcat"), "-P", "-b", bootstrap, "-t", topic, "-z", codec, "-K:", "-Z"]
    command += ["-X", "linger.ms=100", "-X", "acks=all"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}={value}"]
    result = subprocess.run(command, input=b"".join(lines), capture_output=True, timeout=120, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr.decode(errors="replace")


def committed_offsets(
    bootstrap: str, group: str, topic: str, security: Mapping[str, Any] | None = None
) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (missing partitions have none)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**(security or {}), bootstrap_servers=bootstrap, client_id="tests-offsets")
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def end_offsets(bootstrap: str, topic: str, security: Mapping[str, Any] | None = None) -> dict[int, int]:
    """The end offset of every partition of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**(security or {}), bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def wait_drained(
    bootstrap: str, group: str, topic: str, timeout_s: float = 90, security: Mapping[str, Any] | None = None
) -> None:
    """Wait until the group has committed the end offset of every partition of ``topic``."""
    from kafka.errors import CoordinatorNotAvailableError

    ends = end_offsets(bootstrap, topic, security)
    deadline = time.monotonic() + timeout_s
    committed: dict[int, int] = {}
    while True:
        # A broker that has just started may still be loading its offsets topic.
        with contextlib.suppress(CoordinatorNotAvailableError):
            committed = committed_offsets(bootstrap, group, topic, security)
        if all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} did not drain {topic}: committed {committed}, end {ends}")
        time.sleep(0.5)


def read_topic(bootstrap: str, name: str, expected: int, timeout_s: float = 30) -> list[Any]:
    """Every record of ``name`` from the beginning, waiting until ``expected`` arrived (or the timeout)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(name, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records
