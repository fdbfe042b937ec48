"""The member's offset book keeping: what each stored batch lets it commit, and committing it.

A batch commits, per partition, past its last record and up to the client's fetch position seen right after
its poll: the position is also past what the client skipped without returning it (transaction markers,
aborted records), so a partition whose last offset is a marker still reaches its end (lag 0). Commits are
asynchronous (a failed one is harmless: stored records are only re-read and re-stored) and made again a second
later after a failure; two wait for the broker: the hand-over of partitions about to be revoked, and the last
one, on the way out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from consumer.assignment import Assignment
from consumer.ingest import ConsumedRecord
from consumer.kafka import KAFKA_TIMEOUT_S, Tick
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
    """Commits what stored batches reach, in batch order, for the partitions the member owns at commit time.

    Kafka accepts a commit from any current member for any partition, so a commit for a partition that has
    moved on would set the group's offset back once it lands after the new owner's (and an idle owner does not
    commit again). None is sent: before a partition is given up, :meth:`hand_over` commits it and waits for the
    broker, after the member has finished or voided every batch in flight (see ``IngestLoop``); every commit
    after that is filtered by the assignment. Commits sent before the hand-over's reach the coordinator before
    it on the same connection, so none of them can land after the new owner's either.
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

    def reach(self, polled: Mapping[Any, Sequence[ConsumedRecord]], *, with_positions: bool) -> Reach:
        """What ``polled`` will let the member commit; the client's positions are asked for (about 80 us a
        partition) only ``with_positions``: a full poll means more records wait, whose commits cover the rest."""
        next_offsets = {tp: records[-1].offset + 1 for tp, records in polled.items() if records}
        return Reach(next_offsets, self._positions() if with_positions else {})

    def stored(self, reach: Reach) -> dict[Any, int]:
        """Commit what a stored batch reaches in the partitions still owned; return the offsets committed."""
        owned = self._assignment.owned
        offsets = {tp: offset for tp, offset in reach.next_offsets.items() if tp in owned}
        for tp, position in reach.positions.items():
            if tp in owned and position > max(offsets.get(tp, -1), self._committed.get(tp, -1)):
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
        try:
            self._consumer.commit(offsets, timeout_ms=int(self._timeout_s() * 1000))
        except KafkaError as exc:
            self._on_failure(exc)

    async def hand_over(self, revoked: set[Any], tick: Tick) -> dict[Any, int]:
        """Commit the latest stored offsets of partitions about to be revoked and wait for the broker's answer
        (bounded like the final commit); then forget them. Returns the offsets the broker acknowledged.

        Runs inside kafka-python's rebalance, on its IO thread: the answer is awaited there, a ``tick`` of the IO
        loop at a time (so heartbeats go on), instead of blocking. An answer that has not come in time is not
        waited for: the request went out before this member rejoins, so it still lands before the new owner
        reads the group's offsets, or fails and the new owner re-reads from the previous commit.
        """
        offsets = {tp: self._committed[tp] for tp in revoked if tp in self._committed}
        self.forget(revoked)
        if not offsets:
            return {}
        try:
            future = self._consumer.commit_async({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as exc:
            self._hand_over_failed(exc)
            return {}
        deadline = time.monotonic() + self._timeout_s()
        while not future.is_done:
            if time.monotonic() >= deadline:
                self._hand_over_failed(KafkaTimeoutError("no answer to the hand-over commit in time"))
                return {}
            await tick()
        if future.failed():
            self._hand_over_failed(future.exception)
            return {}
        return offsets

    def forget(self, partitions: set[Any]) -> None:
        """Drop the stored offsets of partitions no longer owned (revoked, or lost with the membership)."""
        for tp in partitions:
            self._committed.pop(tp, None)

    def _timeout_s(self) -> float:
        return min(KAFKA_TIMEOUT_S, max(0.5, self._stop.remaining(FINAL_COMMIT_RESERVE_S)))

    def _hand_over_failed(self, exc: BaseException) -> None:
        # Not retried: the partitions are no longer this member's. Their next owner re-reads from the previous
        # commit, which only repeats stored (idempotent) writes.
        self._metrics.kafka_errors.inc()
        log.warning("hand-over commit failed", extra={"error": f"{type(exc).__name__}: {exc}"})

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
