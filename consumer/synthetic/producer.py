"""``active-users produce``: send the generator's records to Kafka, at a rate or as fast as possible.

Every record Kafka acknowledged can be written to a JSON-lines file, one line per record in send order::

    {"key": "<user id>", "value": {<the event>}, "malformed": false}
    {"key": "<user id>", "value": "<base64 of the malformed bytes>", "malformed": true}

so that a test or a benchmark computes its expected result from exactly what was sent. Records that failed
are not written; the summary line counts them and the exit code is 1.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from activeusers.errors import ConfigError
from activeusers.settings import Settings
from consumer.kafka import security_config
from consumer.progress import ProgressBar
from consumer.synthetic.generator import GeneratedRecord, Profile, generate

# Throughput before latency: far larger batches and a longer linger than the dead-letter producer's.
LINGER_MS = 20
BATCH_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class ProduceResult:
    """What a run sent."""

    acknowledged: int
    malformed: int
    failed: int
    seconds: float

    def summary(self, topic: str) -> str:
        """The final one-line summary."""
        rate = self.acknowledged / self.seconds if self.seconds > 0 else 0.0
        return (
            f"produced {self.acknowledged} records to {topic} ({self.malformed} malformed, {self.failed} failed) "
            f"in {self.seconds:.1f} s, {rate:,.0f} records/s"
        )


def new_fast_producer(settings: Settings, client_id: str, acks: str = "all") -> Any:
    """A producer tuned for throughput: large batches, a short linger."""
    return KafkaProducer(
        **security_config(settings),
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        client_id=client_id,
        acks=int(acks) if acks.isdigit() else acks,
        enable_idempotence=acks == "all",
        linger_ms=LINGER_MS,
        batch_size=BATCH_BYTES,
        retries=5,
        max_block_ms=30_000,
        request_timeout_ms=30_000,
    )


def jsonl_line(record: GeneratedRecord) -> bytes:
    """The record as one JSON-lines line (with its newline)."""
    value: object = base64.b64encode(record.value).decode() if isinstance(record.value, bytes) else record.value
    return orjson.dumps({"key": record.key, "value": value, "malformed": record.malformed}) + b"\n"


def read_jsonl(path: Path) -> list[GeneratedRecord]:
    """The records of a file written by :func:`send`, in its order."""
    records = []
    for line in path.read_bytes().splitlines():
        row = orjson.loads(line)
        value = base64.b64decode(row["value"]) if row["malformed"] else row["value"]
        records.append(GeneratedRecord(row["key"], value))
    return records


def send(
    producer: Any,
    topic: str,
    records: Iterable[GeneratedRecord],
    *,
    total: int,
    rate: float = 0.0,
    jsonl: IO[bytes] | None = None,
    out: TextIO = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProduceResult:
    """Send ``records`` (``rate`` per second, or as fast as possible when 0) and wait for every acknowledgement.

    Lines go to ``jsonl`` in send order, only for acknowledged records.
    """
    started = clock()
    bar = ProgressBar(total, out, clock)
    pending: collections.deque[tuple[Any, GeneratedRecord]] = collections.deque()
    acknowledged = malformed = failed = 0

    def settle(block: bool) -> None:
        nonlocal acknowledged, malformed, failed
        while pending and (block or pending[0][0].is_done):
            future, record = pending.popleft()
            try:
                future.get(timeout=60)
            except Exception:  # any delivery failure: the record is not acknowledged
                failed += 1
                continue
            acknowledged += 1
            malformed += record.malformed
            if jsonl is not None:
                jsonl.write(jsonl_line(record))

    for sent, record in enumerate(records, start=1):
        if rate > 0:
            ahead = started + sent / rate - clock()
            if ahead > 0.005:
                sleep(ahead)
        pending.append((producer.send(topic, key=record.key.encode(), value=record.encoded()), record))
        if sent % 1000 == 0:
            settle(block=False)
            bar.update(acknowledged)
    producer.flush(timeout=120)
    settle(block=True)
    bar.update(acknowledged, final=True)
    return ProduceResult(acknowledged, malformed, failed, clock() - started)


def ensure_topics(settings: Settings, partitions: int, timeout_s: float = 30.0) -> list[str]:
    """Create the activity topic (``partitions`` partitions) and the dead-letter topic if missing; wait for
    their leaders. Returns the names it created."""
    admin = KafkaAdminClient(
        **security_config(settings),
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        client_id="au-produce",
    )
    created = []
    try:
        for name in (settings.kafka_topic, settings.kafka_dlq_topic):
            try:
                admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=int(timeout_s * 1000))
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        deadline = time.monotonic() + timeout_s
        names = [settings.kafka_topic, settings.kafka_dlq_topic]
        while not all(_has_leaders(d) for d in admin.describe_topics(names)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {names} have no leaders after {timeout_s:.0f} s")
            time.sleep(0.1)
    finally:
        admin.close()
    return created


def _has_leaders(described: dict[str, Any]) -> bool:
    parts = described.get("partitions") or []
    return bool(parts) and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in parts)


def group_lag(settings: Settings) -> int:
    """Records of KAFKA_TOPIC that KAFKA_GROUP_ID has not committed yet (end offset minus committed offset)."""
    common = {**security_config(settings), "bootstrap_servers": settings.kafka_bootstrap_servers.split(",")}
    consumer = KafkaConsumer(**common, client_id="au-produce-lag", enable_auto_commit=False)
    admin = KafkaAdminClient(**common, client_id="au-produce-lag")
    try:
        partitions = consumer.partitions_for_topic(settings.kafka_topic) or set()
        ends = consumer.end_offsets([TopicPartition(settings.kafka_topic, p) for p in partitions])
        committed = admin.list_group_offsets(settings.kafka_group_id).get(settings.kafka_group_id, {})
    finally:
        admin.close()
        consumer.close()
    done = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == settings.kafka_topic}
    return sum(max(end - max(done.get(tp.partition, 0), 0), 0) for tp, end in ends.items())


def wait_drained(settings: Settings, timeout_s: float, out: TextIO = sys.stderr) -> bool:
    """Wait until the consumer group has committed everything in the topic; whether it did in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        lag = group_lag(settings)
        if lag == 0:
            return True
        if time.monotonic() > deadline:
            print(f"consumer group {settings.kafka_group_id} still lags {lag} records", file=out)
            return False
        time.sleep(0.5)


def run_produce(settings: Settings, args: argparse.Namespace) -> int:
    """``active-users produce``: options from the command line, Kafka and topics from the settings."""
    profile = Profile(
        users=max(args.users, 1),
        days=max(args.days, 1),
        heavy_share=args.heavy_share,
        heavy_factor=args.heavy_factor,
        new_user_share=args.new_user_share,
        weekend_factor=args.weekend_factor,
        malformed_share=args.malformed_share,
        timezone=settings.activity_timezone,
        platforms=args.platforms,
    )
    problems = profile.problems() + (["--rate must not be negative"] if args.rate < 0 else [])
    if problems:
        raise ConfigError("; ".join(problems))
    if args.create_topic:
        created = ensure_topics(settings, args.partitions)
        print(f"topics created: {', '.join(created) or 'none (they exist)'}", file=sys.stderr)
    now_ms = args.now if args.now is not None else int(time.time() * 1000)
    records = generate(profile, args.seed, now_ms, args.count)
    result = ProduceResult(0, 0, 0, 0.0)
    if args.count:
        producer = new_fast_producer(settings, "active-users-produce", args.acks)
        try:
            with contextlib.ExitStack() as files:
                jsonl = files.enter_context(args.jsonl.open("wb")) if args.jsonl is not None else None
                result = send(producer, settings.kafka_topic, records, total=args.count, rate=args.rate, jsonl=jsonl)
        finally:
            producer.close(timeout=10)
        print(result.summary(settings.kafka_topic) + (f", written to {args.jsonl}" if args.jsonl else ""))
    if args.wait_drained and not wait_drained(settings, args.drain_timeout):
        return 1
    return 1 if result.failed else 0
