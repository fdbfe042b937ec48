"""The member's offset book keeping: what each stored batch lets it commit, and committing it.

A batch commits, per partition, past its last record and up to the client's fetch position seen right after
its poll: the position is also past what the client skipped without returning it (transaction markers,
aborted records), so a partition whose last offset is a marker still reaches its end (lag 0). Commits are
asynchronous (a failed one is harmless: stored records are only re-read and re-stored) and made again a second
later after a failure; the last one, on the way out, waits for the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from consumer.assignment import Assignment
from consumer.ingest import Record
from consumer.kafka import KAFKA_TIMEOUT_S
from consumer.metrics import ConsumerMetrics
from consumer.shutdown import StopRequest

log = logging.getLogger(__name__)

RECOMMIT_S = 1.0
# What the final commit leaves of the stop budget (consumer.shutdown.GRACE_S) for leaving the group and
# stopping the store worker.
FINAL_COMMIT_RESERVE_S = 2.0


@dataclass(frozen=True, slots=True)
class Reach:
    """How far one poll lets the member commit once its batch is stored: past its records and past the
    positions the client reached (when asked for)."""

    next_offsets: Mapping[Any, int]
    positions: Mapping[Any, int]


class Commits:
    """Commits what stored batches reach, in batch order.

    A batch polled before a rebalance and stored after it still commits its partitions, also those now owned by
    another member: usually harmless (the new owner re-reads stored records), but a late commit that lands after
    the new owner's would set the group's offset back, and an idle owner does not commit again (a known gap: see
    docs/consumer.md, rebalance).
    """

    def __init__(
        self, kafka_consumer: Any, assignment: Assignment, metrics: ConsumerMetrics, stop: StopRequest
    ) -> None:
        self._consumer = kafka_consumer
        self._assignment = assignment
        self._metrics = metrics
        self._stop = stop
        self._committed: dict[Any, int] = {}
        self._recommit = threading.Event()
        self._last_recommit = 0.0

    def reach(self, polled: Mapping[Any, Sequence[Record]], *, with_positions: bool) -> Reach:
        """What ``polled`` will let the member commit; the client's positions are asked for (about 80 us a
        partition) only ``with_positions``: a full poll means more records wait, whose commits cover the rest."""
        next_offsets = {tp: records[-1].offset + 1 for tp, records in polled.items() if records}
        return Reach(next_offsets, self._positions() if with_positions else {})

    def stored(self, reach: Reach) -> dict[Any, int]:
        """Commit what a stored batch reaches; return the offsets committed (per partition)."""
        offsets = dict(reach.next_offsets)
        for tp, position in reach.positions.items():
            if position > max(offsets.get(tp, -1), self._committed.get(tp, -1)):
                offsets[tp] = position
        if offsets:
            self._commit(offsets)
        return offsets

    def retry_failed(self) -> None:
        """After a failed commit, commit the latest stored offsets again (at most every ``RECOMMIT_S``)."""
        now = time.monotonic()
        if self._recommit.is_set() and now - self._last_recommit >= RECOMMIT_S:
            self._recommit.clear()
            self._last_recommit = now
            offsets = self._owned_offsets()
            if offsets:
                self._commit_async(offsets)

    def commit_final(self) -> None:
        """Commit the latest stored offsets and wait for the broker (on the way out)."""
        offsets = self._owned_offsets()
        if not offsets:
            return
        timeout_s = min(KAFKA_TIMEOUT_S, max(0.5, self._stop.remaining(FINAL_COMMIT_RESERVE_S)))
        try:
            self._consumer.commit(offsets, timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            self._on_failure(exc)

    def _positions(self) -> dict[Any, int]:
        positions = {}
        for tp in list(self._assignment.owned):
            try:
                position = self._consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue  # revoked meanwhile
            if position is not None:
                positions[tp] = position
        return positions

    def _owned_offsets(self) -> dict[Any, OffsetAndMetadata]:
        owned = set(self._assignment.owned)
        self._committed = {tp: offset for tp, offset in self._committed.items() if tp in owned}
        return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._committed.items()}

    def _commit(self, offsets: Mapping[Any, int]) -> None:
        # Asynchronous: not waiting for the coordinator keeps a round trip per batch off the fetch path.
        self._committed.update(offsets)
        self._commit_async({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})

    def _commit_async(self, offsets: dict[Any, OffsetAndMetadata]) -> None:
        try:
            self._consumer.commit_async(offsets, callback=self._on_done)
        except KafkaError as exc:
            self._on_failure(exc)

    def _on_done(self, offsets: object, response: object) -> None:
        if isinstance(response, BaseException):
            self._on_failure(response)

    def _on_failure(self, exc: BaseException) -> None:
        # May run on kafka-python's thread: only flag it, the loop commits again. A commit lost for good is still
        # harmless, but it would leave the lag of an idle partition standing until its next record.
        self._recommit.set()
        self._metrics.kafka_errors.inc()
        log.warning("commit failed; will commit again", extra={"error": f"{type(exc).__name__}: {exc}"})
