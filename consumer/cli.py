"""The consumer's subcommands: ``consume`` (a consumer-group member) and ``replay`` (rebuild from the topic)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.store import ActivityWriter, redis_client


def register(commands: Any) -> None:
    """Add ``consume`` and ``replay`` to the command line."""
    consume = commands.add_parser(
        "consume",
        help="run a consumer-group member: Kafka activity events into Redis",
        description="Consume KAFKA_TOPIC as a member of KAFKA_GROUP_ID and store activity in REDIS_URL. "
        "Run several copies to share the partitions. SIGTERM or Ctrl-C stops cleanly.",
    )
    consume.set_defaults(run=_consume)
    replay = commands.add_parser(
        "replay",
        help="rebuild Redis from the topic's beginning (safe beside the live consumer)",
        description="Read every partition of KAFKA_TOPIC from its beginning to its current end, without a "
        "consumer group, and store every event again. Writes are idempotent.",
    )
    replay.add_argument(
        "--dead-letter",
        action="store_true",
        help="also publish malformed records to KAFKA_DLQ_TOPIC (the live consumer already did; off by default)",
    )
    replay.set_defaults(run=_replay)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so the loop can finish its batch and stop cleanly."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _consume(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.loop import run_consumer

    return run_consumer(settings, stop_on_signals())


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.deadletter import DeadLetterQueue
    from consumer.kafka import new_consumer, new_producer
    from consumer.metrics import ConsumerMetrics
    from consumer.replay import replay

    stop = stop_on_signals()
    redis = redis_client(settings)
    writer = ActivityWriter(redis, KeySchema(settings.redis_key_prefix, settings.activity_timezone), settings)
    producer = new_producer(settings, "active-users-replay-dlq") if args.dead_letter else None
    try:
        dead_letters = DeadLetterQueue(producer, settings.kafka_dlq_topic) if producer is not None else None
        kafka_consumer = new_consumer(settings, "active-users-replay", group=False)
        try:
            result = replay(settings, kafka_consumer, writer, dead_letters, ConsumerMetrics(), stop)
        finally:
            kafka_consumer.close(autocommit=False)
    finally:
        if producer is not None:
            producer.close(timeout=10)
        redis.close()
    print(
        f"replay {'complete' if result.completed else 'interrupted'}: {result.records} records, "
        f"{result.stored} stored, {result.skipped} skipped, {result.dead_lettered} malformed, "
        f"{result.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0 if result.completed else 1
