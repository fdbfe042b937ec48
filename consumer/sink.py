"""Storing a classified batch: Redis writes and dead letters, retried until done or shutdown."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from kafka.errors import KafkaError

from activeusers.errors import StoreUnavailable
from activeusers.store import ActivityWriter
from consumer.deadletter import DeadLetterQueue
from consumer.ingest import Batch
from consumer.metrics import ConsumerMetrics

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 10.0
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


def backoff_delays(first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S) -> Callable[[], float]:
    """A callable returning the next delay of a capped exponential backoff with +-20% jitter."""
    state = {"next": first}

    def delay() -> float:
        current = state["next"]
        state["next"] = min(cap, current * 2)
        return current * random.uniform(0.8, 1.2)

    return delay


class Sink:
    """Where batches go: Redis through the writer, malformed records to the dead-letter topic (if any)."""

    def __init__(
        self,
        writer: ActivityWriter,
        dead_letters: DeadLetterQueue | None,
        metrics: ConsumerMetrics,
        on_redis: Callable[[bool], None] = lambda ok: None,
    ) -> None:
        self._writer = writer
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._on_redis = on_redis

    def store(self, batch: Batch, stop: threading.Event) -> bool:
        """Store the batch, retrying with capped backoff; True once stored, False if ``stop`` came first.

        While this retries nothing is polled, so fetching stops; kafka-python's heartbeat thread keeps the
        membership until ``max.poll.interval.ms``, after which the partitions move to another member, which
        reads the same uncommitted records again.
        """
        delay = backoff_delays()
        while True:
            try:
                if batch.buckets:
                    self._writer.write(batch.buckets)
                if batch.dead_letters and self._dead_letters is not None:
                    self._dead_letters.publish(batch.dead_letters, KAFKA_TIMEOUT_S)
            except StoreUnavailable as exc:
                self._metrics.store_errors.inc()
                self._on_redis(False)
                log.warning("redis write failed, retrying", extra={"error": str(exc)})
            except KafkaError as exc:
                self._metrics.kafka_errors.inc()
                log.warning("dead-letter publish failed, retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
            else:
                if batch.buckets:
                    self._on_redis(True)
                return True
            if stop.wait(delay()):
                log.warning("batch dropped uncommitted at shutdown; it will be read again")
                return False
