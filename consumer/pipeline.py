"""The batches in flight between the member and its store worker, answered in order.

The worker stores batch N while the member fetches N+1 and N+2: with ``IN_FLIGHT`` batches queued the worker
never waits for the member, and the member waits only when the worker is behind. Offsets are cumulative per
partition, so after a batch dropped at shutdown (uncommitted) no later batch may be reported as stored. A batch
voided at a rebalance is different: still stored and reported in its turn, it just commits nothing (a later
batch's commit, made once it is stored, covers its records where the member still owns them).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from consumer.commits import Reach
from consumer.ingest import ConsumedRecord, slices_of
from consumer.metrics import ConsumerMetrics
from consumer.shutdown import StopRequest
from consumer.worker import Stored, StoreWorker

log = logging.getLogger(__name__)

IN_FLIGHT = 2
# The part of the stop budget (consumer.shutdown.GRACE_S) that waiting for the batches in flight leaves for the
# final commit, leaving the group and stopping the store worker.
FINISH_RESERVE_S = 4.0

OnStored = Callable[[Stored, Reach, float], None]
NO_REACH = Reach({}, {})


class Pipeline:
    """Hands polls to the store worker and reports each stored batch, oldest first, to ``on_stored`` (with how
    far it lets the member commit and the seconds from hand-off to answer)."""

    def __init__(
        self,
        worker: StoreWorker,
        stop: StopRequest,
        metrics: ConsumerMetrics,
        on_stored: OnStored,
        on_redis: Callable[[bool], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._worker = worker
        self._stop = stop
        self._metrics = metrics
        self._on_stored = on_stored
        self._on_redis = on_redis
        self._clock = clock
        self._in_flight: deque[tuple[Reach, float]] = deque()
        self.dropped = False

    def submit(self, polled: Mapping[Any, Sequence[ConsumedRecord]], reach: Reach) -> None:
        """Hand one poll to the worker; finish the oldest batch while too many are in flight."""
        started = time.perf_counter()
        self._worker.submit(int(self._clock() * 1000), slices_of(polled))
        self._in_flight.append((reach, started))
        while len(self._in_flight) > IN_FLIGHT:
            self._finish_oldest()

    def drain(self) -> bool:
        """Finish every batch in flight; False once one was dropped (uncommitted) because of shutdown."""
        while self._in_flight:
            self._finish_oldest()
        return not self.dropped

    def finish_answered(self, timeout_s: float) -> bool:
        """Finish the batches the worker answers within ``timeout_s``; True once none is in flight."""
        deadline = time.monotonic() + timeout_s
        try:
            while self._in_flight:
                self._finish_oldest(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False
        return True

    def void(self) -> int:
        """Let the batches in flight commit nothing once answered: polled before a rebalance, they may reach
        partitions that another member now reads from the last commit. Returns how many there were."""
        self._in_flight = deque((NO_REACH, started) for _, started in self._in_flight)
        return len(self._in_flight)

    def _finish_oldest(self, timeout_s: float | None = None) -> None:
        reach, started = self._in_flight[0]
        stored = self._worker.wait(self._stop, self._redis_report, self._kafka_report, FINISH_RESERVE_S, timeout_s)
        self._in_flight.popleft()
        if stored is None or self.dropped:
            if not self.dropped:
                log.warning("batch dropped uncommitted at shutdown; it and later ones will be read again")
            self.dropped = True
            return
        self._on_stored(stored, reach, time.perf_counter() - started)

    def _redis_report(self, ok: bool, error: str) -> None:
        if not ok:
            self._metrics.store_errors.inc()
            log.warning("redis write failed, retrying", extra={"error": error})
        self._on_redis(ok)

    def _kafka_report(self, error: str) -> None:
        self._metrics.kafka_errors.inc()
        log.warning("dead-letter publish failed, retrying", extra={"error": error})
