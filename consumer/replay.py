"""Rebuilding Redis from the activity topic's beginning, beside the live consumer.

Replay reads every partition from its first retained offset up to the end offsets seen at start, with no
consumer group (so it neither commits nor disturbs the live group), and writes through the same classifier
and writer as the live consumer. Set additions are idempotent, so running both at once is safe.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO

from kafka import TopicPartition

from activeusers.errors import ConfigError, StoreUnavailable
from activeusers.settings import Settings
from activeusers.writer import ActivityWriter
from consumer.deadletter import DeadLetterQueue
from consumer.ingest import Classifier, slices_of
from consumer.kafka import KAFKA_TIMEOUT_S
from consumer.metrics import ConsumerMetrics
from consumer.polling import Poller
from consumer.progress import ProgressBar
from consumer.storing import store_batch
from consumer.undecodable import UndecodableFetch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay read and did."""

    records: int
    stored: int
    dead_lettered: int
    skipped: int
    seconds: float
    completed: bool
    undecodable: UndecodableFetch | None = None


def replay(
    settings: Settings,
    kafka_consumer: Any,
    writer: ActivityWriter,
    dead_letters: DeadLetterQueue | None,
    metrics: ConsumerMetrics,
    stop: threading.Event,
    out: TextIO = sys.stderr,
    clock: Callable[[], float] = time.time,
) -> ReplayResult:
    """Read the topic from the beginning to the end offsets seen now and store every event again."""
    started = time.monotonic()
    partitions = kafka_consumer.partitions_for_topic(settings.kafka_topic)
    if not partitions:
        raise ConfigError(f"topic {settings.kafka_topic!r} does not exist or has no partitions")
    tps = [TopicPartition(settings.kafka_topic, p) for p in sorted(partitions)]
    kafka_consumer.assign(tps)
    kafka_consumer.seek_to_beginning(*tps)
    begin = kafka_consumer.beginning_offsets(tps)
    end = kafka_consumer.end_offsets(tps)
    remaining = {tp for tp in tps if end[tp] > begin[tp]}
    total = sum(end[tp] - begin[tp] for tp in tps)
    log.info("replay started", extra={"topic": settings.kafka_topic, "partitions": len(tps), "records": total})
    bar = ProgressBar(total, out)
    classifier = Classifier(settings)

    publish = None if dead_letters is None else partial(dead_letters.publish, timeout_s=KAFKA_TIMEOUT_S)

    def failed(exc: BaseException) -> None:
        (metrics.store_errors if isinstance(exc, StoreUnavailable) else metrics.kafka_errors).inc()
        log.warning("replay write failed, retrying", extra={"error": f"{type(exc).__name__}: {exc}"})

    poller = Poller(kafka_consumer, metrics, stop)
    records = stored = dead = skipped = 0
    while remaining and not stop.is_set():
        polled = poller.poll()
        # Records past the end seen at start arrived during the replay; the live consumer owns them.
        bounded = {tp: [r for r in recs if r.offset < end[tp]] for tp, recs in polled.items()}
        batch = classifier.classify(slices_of(bounded), int(clock() * 1000))
        if not store_batch(batch, writer.write, publish, stop.wait, failed):
            break
        records += batch.records
        stored += batch.stored_events
        dead += len(batch.dead_letters)
        skipped += sum(batch.skipped.values())
        remaining = {tp for tp in remaining if kafka_consumer.position(tp) < end[tp]}
        bar.update(records)
    bar.update(records, final=True)
    seconds = time.monotonic() - started
    result = ReplayResult(records, stored, dead, skipped, seconds, completed=not remaining, undecodable=poller.failure)
    log.info(
        "replay finished" if result.completed else "replay interrupted",
        extra={"records": records, "stored": stored, "deadLettered": dead, "skipped": skipped},
    )
    return result
