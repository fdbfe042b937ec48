"""What the member has consumed, for its metrics and the periodic ``throughput`` log line: counts per stored
batch, the newest stored event time and the lag of every owned partition."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from consumer.assignment import Assignment, label, labels
from consumer.metrics import ConsumerMetrics
from consumer.worker import Stored

log = logging.getLogger(__name__)

THROUGHPUT_LOG_S = 10.0


class Throughput:
    """Counts stored batches into the metrics and logs a ``throughput`` line every ``THROUGHPUT_LOG_S``."""

    def __init__(self, kafka_consumer: Any, assignment: Assignment, metrics: ConsumerMetrics) -> None:
        self._consumer = kafka_consumer
        self._assignment = assignment
        self._metrics = metrics
        self._last_log = time.monotonic()
        self._records = self._stored = self._dead = 0
        self.newest_event_ms = -1
        self.lag: dict[str, int] = {}

    def account(self, stored: Stored, committed: Mapping[Any, int], seconds: float) -> None:
        """Count a stored batch, which took ``seconds`` from hand-off to answer, and committed ``committed``."""
        m = self._metrics
        m.consumed.inc(stored.records)
        m.stored.inc(stored.stored_events)
        m.batch_seconds.observe(seconds)
        m.batch_records.observe(stored.records)
        for reason, count in stored.skipped.items():
            m.skipped.labels(reason).inc(count)
        m.ignored_values.inc(stored.ignored_values)
        for reason, count in stored.dead_lettered.items():
            m.dead_lettered.labels(reason).inc(count)
        self._records += stored.records
        self._stored += stored.stored_events
        self._dead += sum(stored.dead_lettered.values())
        if stored.newest_event_ms > self.newest_event_ms:
            self.newest_event_ms = stored.newest_event_ms
            m.last_event.set(self.newest_event_ms / 1000)
        self.update_lag(committed)

    def update_lag(self, committed: Mapping[Any, int]) -> None:
        """The lag of the partitions just committed, and none for partitions no longer owned."""
        # The high watermark counts every offset, transaction markers too; under read_committed it is also past
        # the records of transactions still open, which count as lag until they end.
        owned = set(self._assignment.owned)
        for tp, next_offset in committed.items():
            if tp not in owned:
                continue
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                name = label(tp)
                self.lag[name] = max(0, highwater - next_offset)
                self._metrics.lag.labels(name).set(self.lag[name])
        current = set(labels(owned))
        for name in [name for name in self.lag if name not in current]:
            del self.lag[name]
            self._metrics.lag.remove(name)

    def log_if_due(self) -> None:
        """Log the ``throughput`` line once ``THROUGHPUT_LOG_S`` have passed since the last one."""
        now = time.monotonic()
        elapsed = now - self._last_log
        if elapsed < THROUGHPUT_LOG_S:
            return
        log.info(
            "throughput",
            extra={
                "records": self._records,
                "recordsPerSecond": round(self._records / elapsed, 1),
                "stored": self._stored,
                "deadLettered": self._dead,
                "lag": sum(self.lag.values()),
            },
        )
        self._records = self._stored = self._dead = 0
        self._last_log = now
