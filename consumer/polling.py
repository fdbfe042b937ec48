"""Polling Kafka while the broker may be restarting: one path for the live consumer and the replay.

kafka-python raises out of ``poll()`` when, say, the group coordinator or a partition leader cannot be found
while the broker restarts; its state recovers on a later poll. Such a failed poll is counted, logged and waited
out with capped exponential backoff (interrupted by shutdown), never a reason to stop. A fetch the client cannot
decode is the one exception: polling again would never return (see :mod:`consumer.undecodable`), so it is
reported once and ends the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from consumer.ingest import ConsumedRecord
from consumer.metrics import ConsumerMetrics
from consumer.retry import backoff_delays
from consumer.shutdown import EXIT_UNDECODABLE
from consumer.undecodable import UndecodableFetch, undecodable

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS: Final = 500


class Poller:
    """``poll()`` of one Kafka consumer that answers ``{}`` after a failure, having waited the next back-off
    delay; the delays start again from the shortest once a poll succeeds.

    After a fetch that cannot be decoded, ``failure`` says where and why, ``stop`` is set and it answers ``{}``
    without polling again.
    """

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
        self.failure: UndecodableFetch | None = None

    def poll(self) -> Mapping[Any, Sequence[ConsumedRecord]]:
        """The records of one poll (``{}`` when there were none or the poll failed)."""
        if self.failure is not None:
            return {}
        try:
            polled: Mapping[Any, Sequence[ConsumedRecord]] = self._consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        except Exception as exc:
            failure = undecodable(exc, self._consumer)  # re-raises what is neither Kafka's nor a codec's
            if failure is not None:
                self._fail(failure)
                return {}
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

    def _fail(self, failure: UndecodableFetch) -> None:
        self.failure = failure
        self._metrics.undecodable.labels(failure.label).inc()
        log.error("undecodable fetch; stopping", extra={**failure.fields(), "exitCode": EXIT_UNDECODABLE})
        self._stop.set()
