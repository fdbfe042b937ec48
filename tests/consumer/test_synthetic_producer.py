"""``active-users produce``: the JSON-lines file is exactly what Kafka holds, and the consumer stores its oracle."""

from __future__ import annotations

import io
import os
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

from activeusers.keys import KeySchema
from consumer.synthetic.generator import GeneratedRecord, Profile, generate
from consumer.synthetic.producer import read_jsonl, send
from tests.support.environment import REPO_ROOT
from tests.support.indexstate import bucket_state
from tests.support.oracle import oracle
from tests.support.processes import ConsumerProcess, consumer_env
from tests.support.topics import wait_drained

NOW_MS = 1_767_225_600_000


class FakeFuture:
    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.is_done = True

    def get(self, timeout: float) -> None:
        if not self.ok:
            raise RuntimeError("delivery failed")


class FakeProducer:
    """Fails every record whose key is in ``fail``."""

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.sent: list[tuple[bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> FakeFuture:
        self.sent.append((key, value))
        return FakeFuture(key.decode() not in self.fail)

    def flush(self, timeout: float) -> None:
        pass


def test_jsonl_holds_exactly_the_acknowledged_records(tmp_path):
    records = list(generate(Profile(users=50, days=3, malformed_share=0.1), 5, NOW_MS, 2500))
    failing = {records[10].key, records[2000].key}
    producer = FakeProducer(failing)
    path = tmp_path / "sent.jsonl"
    with path.open("wb") as jsonl:
        result = send(producer, "t", records, total=len(records), jsonl=jsonl, out=io.StringIO())
    expected = [r for r in records if r.key not in failing]
    assert read_jsonl(path) == expected
    assert result.acknowledged == len(expected)
    assert result.failed == len(records) - len(expected) > 0
    assert result.malformed == sum(r.malformed for r in expected) > 0
    assert [v for _, v in producer.sent] == [r.encoded() for r in records]


def test_rate_is_respected_with_a_fake_clock():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    records = list(generate(Profile(users=5, days=1), 1, NOW_MS, 200))
    send(FakeProducer(set()), "t", records, total=200, rate=100.0, out=io.StringIO(), clock=lambda: now[0], sleep=sleep)
    assert 1.95 <= now[0] <= 2.0  # 200 records at 100/s


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> list[tuple[int, GeneratedRecord]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: list[tuple[int, GeneratedRecord]] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < expected and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                found.extend((tp.partition, GeneratedRecord(r.key.decode(), r.value)) for r in batch)
    finally:
        consumer.close()
    return found


def test_produced_topic_equals_the_file_and_the_consumer_stores_its_oracle(
    stack, topic, redis_prefix, redis_client, tmp_path
):
    name = topic(partitions=3)
    jsonl = tmp_path / "sent.jsonl"
    now_ms = int(time.time() * 1000)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = consumer_env(stack, name, redis_prefix, group)
    command = [
        *ConsumerProcess.command("produce"),
        "--count", "4000", "--users", "300", "--days", "20", "--seed", "9", "--now", str(now_ms),
        "--malformed-share", "0.02", "--jsonl", str(jsonl),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "produced 4000 records" in done.stdout and "0 failed" in done.stdout

    sent = read_jsonl(jsonl)
    assert len(sent) == 4000
    assert sent == list(generate(Profile(users=300, days=20, malformed_share=0.02), 9, now_ms, 4000))
    in_topic = read_topic(stack.kafka_bootstrap, name, 4000)
    assert Counter((r.key, r.encoded()) for _, r in in_topic) == Counter((r.key, r.encoded()) for r in sent)
    # One key, one partition, in send order.
    per_key_topic: dict[str, list[bytes]] = defaultdict(list)
    for _, record in in_topic:
        per_key_topic[record.key].append(record.encoded())
    per_key_file: dict[str, list[bytes]] = defaultdict(list)
    for record in sent:
        per_key_file[record.key].append(record.encoded())
    assert per_key_topic == per_key_file

    consumer = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(stack.kafka_bootstrap, group, name)
    finally:
        assert consumer.stop() == 0, consumer.log_text()[-3000:]
    keys = KeySchema(redis_prefix, "UTC")
    expected = oracle(
        [r.value if isinstance(r.value, dict) else None for r in sent], keys, ZoneInfo("UTC"), now_ms, 400
    )
    assert expected  # the stream is not empty of countable events
    assert bucket_state(redis_client, keys) == expected


def test_create_topic_only(stack, kafka_admin):
    name = f"t-create-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "KAFKA_TOPIC": name,
           "KAFKA_DLQ_TOPIC": name + ".dlq"}  # fmt: skip
    command = [*ConsumerProcess.command("produce"), "--create-topic", "--partitions", "4", "--count", "0"]
    try:
        done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        described = {d["name"]: len(d["partitions"]) for d in kafka_admin.describe_topics([name, name + ".dlq"])}
        assert described == {name: 4, name + ".dlq": 4}
    finally:
        kafka_admin.delete_topics([name, name + ".dlq"], raise_errors=False)
