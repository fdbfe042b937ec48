"""Polling Kafka while the broker may be restarting: one path for the live consumer and the replay.

kafka-python raises out of ``poll()`` when, say, the group coordinator or a partition leader cannot be found
while the broker restarts; its state recovers on a later poll. A failed poll is counted, logged and waited
out with capped exponential backoff (interrupted by shutdown), never a reason to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from kafka.errors import KafkaError

from consumer.ingest import Record
from consumer.metrics import ConsumerMetrics
from consumer.retry import backoff_delays

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS: Final = 500


class Poller:
    """``poll()`` of one Kafka consumer that answers ``{}`` after a failure, having waited the next back-off
    delay; the delays start again from the shortest once a poll succeeds."""

    def __init__(
        self,
        kafka_consumer: Any,
        metrics: ConsumerMetrics,
        stop: threading.Event,
        delays: Callable[[], Callable[[], float]] = backoff_delays,
    ) -> None:
        self._consumer = kafka_consumer
        self._metrics = metrics
        self._stop = stop
        self._new_delays = delays
        self._delay = delays()
        self._failing = False
        self.last_success = time.monotonic()

    def poll(self) -> Mapping[Any, Sequence[Record]]:
        """The records of one poll (``{}`` when there were none or the poll failed)."""
        try:
            polled: Mapping[Any, Sequence[Record]] = self._consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        except KafkaError as exc:
            self._metrics.kafka_errors.inc()
            log.warning("poll failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._failing = True
            self._stop.wait(self._delay())
            return {}
        if self._failing:
            self._failing = False
            self._delay = self._new_delays()
        self.last_success = time.monotonic()
        return polled
