"""The consumer-group member: poll, hand to the store worker, then commit exactly what it stored.

Delivery is at least once: an offset is committed only after the batch's Redis writes and dead letters are
acknowledged, and a batch that cannot be stored is retried (fetching stopped meanwhile) or, on shutdown,
dropped uncommitted so that the next owner of the partition reads it again. Set additions are idempotent, so
replaying a batch changes nothing and the stored result is exact.

A fetch the client cannot decode ends the member (see :mod:`consumer.undecodable`): what was stored before it
is committed, nothing after, and ``consume`` exits with ``EXIT_UNDECODABLE`` for a supervisor to act on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from activeusers.errors import ListenError, StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.store import ActivityWriter, redis_client
from consumer.ingest import Batch, Outcome, Record, batch_from, slices_of
from consumer.kafka import KAFKA_TIMEOUT_S, new_consumer
from consumer.metrics import ConsumerMetrics, HealthServer
from consumer.polling import Poller
from consumer.retry import until_done
from consumer.shutdown import EXIT_UNDECODABLE, StopRequest
from consumer.undecodable import UndecodableFetch
from consumer.worker import StoreWorker

log = logging.getLogger(__name__)

THROUGHPUT_LOG_S = 10.0
RECOMMIT_S = 1.0
IN_FLIGHT = 2
# How the stop budget (consumer.shutdown.GRACE_S) is shared: the batches in flight may be waited for until this
# much of it is left, the final commit until FINAL_COMMIT_RESERVE_S is; leaving the group and stopping the
# store worker have the rest.
FINISH_RESERVE_S = 4.0
FINAL_COMMIT_RESERVE_S = 2.0


class _AssignmentLog(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs assignment changes (from inside ``poll``, on kafka-python's thread: it must not block).

    A batch may be in the store worker meanwhile; if its partitions move, its later commit either fails
    (harmless: the new owner re-reads stored records) or lands for records that are already stored.
    """

    def __init__(self, on_change: Callable[[set[Any]], None]) -> None:
        self._on_change = on_change
        self.assigned: set[Any] = set()

    def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self.assigned -= set(revoked)
        if not revoked:
            return
        log.info("partitions revoked", extra={"partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in revoked)})
        self._on_change(self.assigned)

    def on_partitions_assigned(self, assigned: set[Any]) -> None:
        self.assigned |= set(assigned)
        if not assigned:
            return
        log.info("partitions assigned", extra={"partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in assigned)})
        self._on_change(self.assigned)


@dataclass(slots=True)
class _Progress:
    """Counters for the periodic throughput line."""

    started: float
    last_log: float
    records: int = 0
    stored: int = 0
    dead: int = 0
    newest_event_ms: int = -1
    lag: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _InFlight:
    """The batch the store worker has: its records (for offsets and dead-letter metrics), when it was polled and
    the fetch positions right after that poll."""

    polled: Mapping[Any, Sequence[Record]]
    started: float
    positions: Mapping[Any, int]


class IngestLoop:
    """One consumer-group member. ``run()`` returns when ``stop`` is set; resources belong to :func:`run_consumer`."""

    def __init__(
        self,
        settings: Settings,
        kafka_consumer: Any,
        worker: StoreWorker,
        writer: ActivityWriter,
        metrics: ConsumerMetrics,
        stop: StopRequest,
        member_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._consumer = kafka_consumer
        self._worker = worker
        self._writer = writer
        self._metrics = metrics
        self._stop = stop
        self._member_id = member_id
        self._clock = clock
        self._listener = _AssignmentLog(lambda parts: metrics.assigned.set(len(parts)))
        now = time.monotonic()
        self._progress = _Progress(started=now, last_log=now)
        self._in_flight: deque[_InFlight] = deque()
        self._dropped = False
        self._committed: dict[Any, int] = {}
        self._recommit = threading.Event()
        self._poller = Poller(kafka_consumer, metrics, stop)
        self._last_recommit = 0.0
        self._redis_ok = True
        self._last_heartbeat = 0.0
        self._positions: dict[Any, int] = {}

    def run(self) -> None:
        """Consume until ``stop`` is set. Every committed offset has its effects stored."""
        self._consumer.subscribe([self._settings.kafka_topic], listener=self._listener)
        log.info(
            "consumer started",
            extra={
                "member": self._member_id,
                "group": self._settings.kafka_group_id,
                "topic": self._settings.kafka_topic,
            },
        )
        try:
            while not self._stop.is_set():
                polled = self._poll()
                if polled:
                    self.process(polled)
                elif self.drain():
                    self._advance_idle()
                self._housekeeping()
        finally:
            if self.drain():
                self.commit_sync()

    def _poll(self) -> Mapping[Any, Sequence[Record]]:
        """One poll through the shared :class:`~consumer.polling.Poller`, and the positions it reached."""
        polled = self._poller.poll()
        # A full poll means more records are waiting; their commits cover whatever was skipped before them, so
        # the positions (about 80 us a partition to ask for) are only needed by polls that reach the end.
        full = sum(map(len, polled.values())) >= self._settings.batch_size
        self._positions = {} if full or self._poller.failure is not None else self._fetch_positions()
        return polled

    def _fetch_positions(self) -> dict[Any, int]:
        # The client's position is past the records a poll returned and past what it skipped after them
        # (transaction markers, aborted records); committing it rather than "last record + 1" lets a partition
        # whose last batch is a marker reach its end (lag 0).
        positions = {}
        for tp in list(self._listener.assigned):
            try:
                position = self._consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue  # revoked meanwhile
            if position is not None:
                positions[tp] = position
        return positions

    def process(self, polled: Mapping[Any, Sequence[Record]]) -> None:
        """Hand one poll's records to the store worker; finish the oldest batch once too many are in flight.

        The worker decodes and writes batch N while this process fetches N+1 and N+2; with two batches queued,
        the worker never waits for this process and this process waits only when the worker is behind. Offsets
        are committed in batch order, each only once the worker has stored its batch.
        """
        started = time.perf_counter()
        self._worker.submit(int(self._clock() * 1000), slices_of(polled))
        self._in_flight.append(_InFlight(polled, started, self._positions))
        while len(self._in_flight) > IN_FLIGHT:
            self._finish_oldest()

    def drain(self) -> bool:
        """Finish every batch in flight; False if one was dropped (uncommitted) because of shutdown."""
        while self._in_flight:
            self._finish_oldest()
        return not self._dropped

    def _finish_oldest(self) -> None:
        """Wait for the oldest batch, dead-letter its malformed records and commit its offsets."""
        flight = self._in_flight.popleft()
        stored = self._worker.wait(self._stop, self._on_worker_redis, self._on_kafka_failure, FINISH_RESERVE_S)
        if stored is None or self._dropped:
            # Offsets are cumulative per partition: after a dropped batch, committing a later one would skip it.
            if not self._dropped:
                log.warning("batch dropped uncommitted at shutdown; it and later ones will be read again")
            self._dropped = True
            return
        outcome = Outcome(dead=stored.dead, stored_events=stored.stored_events, records=stored.records)
        outcome.skipped.update(stored.skipped)
        outcome.buckets.newest_event_ms = stored.newest_event_ms
        batch = batch_from(flight.polled, outcome)
        batch.next_offsets = self._through(batch.next_offsets, flight.positions)
        self._commit(batch.next_offsets)
        self._account(batch, time.perf_counter() - flight.started)

    def _through(self, next_offsets: Mapping[Any, int], positions: Mapping[Any, int]) -> dict[Any, int]:
        """What a stored batch lets the member commit: past its records and, up to the positions seen when it
        was polled, past the offsets the client skipped (in partitions with or without records in the batch)."""
        offsets = dict(next_offsets)
        for tp, position in positions.items():
            if position > max(offsets.get(tp, -1), self._committed.get(tp, -1)):
                offsets[tp] = position
        return offsets

    def _advance_idle(self) -> None:
        """With nothing in flight, commit the positions the client moved past records it does not return (the
        transaction marker after a partition's last record, aborted records)."""
        offsets = self._through({}, self._positions)
        if offsets:
            self._commit(offsets)
            self._update_lag(offsets)

    def commit_sync(self) -> None:
        """Commit the latest stored offsets and wait for the broker (on the way out)."""
        offsets = self._owned_offsets()
        if not offsets:
            return
        timeout_s = min(KAFKA_TIMEOUT_S, max(0.5, self._stop.remaining(FINAL_COMMIT_RESERVE_S)))
        try:
            self._consumer.commit(offsets, timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            self._on_commit_failure(exc)

    def _owned_offsets(self) -> dict[Any, OffsetAndMetadata]:
        """The latest stored offset of every partition this member still owns."""
        assigned = set(self._listener.assigned)
        self._committed = {tp: offset for tp, offset in self._committed.items() if tp in assigned}
        return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._committed.items()}

    @property
    def failure(self) -> UndecodableFetch | None:
        """The fetch that could not be decoded, which ended the run (None while every fetch decodes)."""
        return self._poller.failure

    def health(self) -> tuple[bool, dict[str, object]]:
        """Whether this member can make progress: Redis writable, polling not stuck, every fetch decodable."""
        failure = self._poller.failure
        poll_age = time.monotonic() - self._poller.last_success
        ok = failure is None and self._redis_ok and poll_age < self._settings.consumer_stale_s
        detail: dict[str, object] = {
            "redis": self._redis_ok,
            "secondsSincePoll": round(poll_age, 3),
            "member": self._member_id,
        }
        if failure is not None:
            detail["error"] = failure.reason()
        return ok, detail

    def _commit(self, next_offsets: Mapping[Any, int]) -> None:
        # Asynchronous: a commit that fails is harmless (stored records are only re-read and re-stored), and
        # not waiting for the coordinator keeps a round trip per batch off the fetch path.
        self._committed.update(next_offsets)
        self._commit_async({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in next_offsets.items()})

    def _commit_async(self, offsets: dict[Any, OffsetAndMetadata]) -> None:
        try:
            self._consumer.commit_async(offsets, callback=self._on_commit_done)
        except KafkaError as exc:
            self._on_commit_failure(exc)

    def _on_commit_done(self, offsets: object, response: object) -> None:
        if isinstance(response, BaseException):
            self._on_commit_failure(response)

    def _on_commit_failure(self, exc: BaseException) -> None:
        # Runs on kafka-python's thread for asynchronous commits: only flag it, the loop commits again. A commit
        # lost for good is still harmless (the records are re-read and re-stored), but it would leave the lag
        # of an idle partition standing until its next record.
        self._recommit.set()
        self._metrics.kafka_errors.inc()
        log.warning("commit failed; will commit again", extra={"error": f"{type(exc).__name__}: {exc}"})

    def _on_kafka_failure(self, error: str) -> None:
        self._metrics.kafka_errors.inc()
        log.warning("dead-letter publish failed, retrying", extra={"error": error})

    def _on_worker_redis(self, ok: bool, error: str) -> None:
        if not ok:
            self._metrics.store_errors.inc()
            log.warning("redis write failed, retrying", extra={"error": error})
        self._set_redis(ok=ok)

    def _account(self, batch: Batch, seconds: float) -> None:
        m = self._metrics
        m.consumed.inc(batch.records)
        m.stored.inc(batch.stored_events)
        m.batch_seconds.observe(seconds)
        m.batch_records.observe(batch.records)
        for reason, count in batch.skipped.items():
            m.skipped.labels(reason).inc(count)
        for letter in batch.dead_letters:
            m.dead_lettered.labels(letter.reason).inc()
        p = self._progress
        p.records += batch.records
        p.stored += batch.stored_events
        p.dead += len(batch.dead_letters)
        if batch.buckets.newest_event_ms > p.newest_event_ms:
            p.newest_event_ms = batch.buckets.newest_event_ms
            m.last_event.set(p.newest_event_ms / 1000)
        self._update_lag(batch.next_offsets)

    def _update_lag(self, next_offsets: Mapping[Any, int]) -> None:
        # The high watermark counts every offset, transaction markers too; under read_committed it is also past
        # the records of transactions still open, which count as lag until they end.
        m, p = self._metrics, self._progress
        assigned = set(self._listener.assigned)
        for tp, next_offset in next_offsets.items():
            if tp not in assigned:
                continue  # moved to another member while the batch was being stored
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                label = f"{tp.topic}-{tp.partition}"
                p.lag[label] = max(0, highwater - next_offset)
                m.lag.labels(label).set(p.lag[label])
        current = {f"{tp.topic}-{tp.partition}" for tp in assigned}
        for label in [label for label in p.lag if label not in current]:
            del p.lag[label]
            m.lag.remove(label)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._recommit.is_set() and now - self._last_recommit >= RECOMMIT_S:
            self._recommit.clear()
            self._last_recommit = now
            offsets = self._owned_offsets()
            if offsets:
                self._commit_async(offsets)
        if now - self._last_heartbeat >= self._settings.consumer_heartbeat_s:
            self._heartbeat()
            self._last_heartbeat = now
        p = self._progress
        if now - p.last_log >= THROUGHPUT_LOG_S:
            elapsed = now - p.last_log
            log.info(
                "throughput",
                extra={
                    "records": p.records,
                    "recordsPerSecond": round(p.records / elapsed, 1),
                    "stored": p.stored,
                    "deadLettered": p.dead,
                    "lag": sum(p.lag.values()),
                },
            )
            p.records = p.stored = p.dead = 0
            p.last_log = now

    def _heartbeat(self) -> None:
        now_ms = int(self._clock() * 1000)
        state: dict[str, object] = {
            "ts_ms": now_ms,
            "group": self._settings.kafka_group_id,
            "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in self._listener.assigned),
            "lastEventMs": self._progress.newest_event_ms,
        }
        try:
            self._writer.heartbeat(self._member_id, state, now_ms)
        except StoreUnavailable as exc:
            self._set_redis(ok=False)
            log.warning("heartbeat failed", extra={"error": str(exc)})
        else:
            self._set_redis(ok=True)

    def _set_redis(self, *, ok: bool) -> None:
        if ok != self._redis_ok:
            log.info("redis recovered" if ok else "redis unavailable")
        self._redis_ok = ok
        self._metrics.redis_up.set(1 if ok else 0)

    def forget(self) -> None:
        """Withdraw this member's heartbeat (best effort, on a clean stop)."""
        try:
            self._writer.forget(self._member_id)
        except StoreUnavailable as exc:
            log.warning("could not remove heartbeat", extra={"error": str(exc)})


def member_id() -> str:
    """A member name unique on this host: ``hostname-pid``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def run_consumer(settings: Settings, stop: StopRequest) -> int:
    """Start every resource, run the loop until ``stop``, then tear down in reverse order.

    Returns 0 after a requested stop, ``EXIT_UNDECODABLE`` after a fetch that cannot be decoded. The metrics
    port is bound first: a port that is taken ends the start-up before anything else runs (:class:`ListenError`,
    which the command line prints as one line).
    """
    member = member_id()
    metrics = ConsumerMetrics()
    health: list[Callable[[], tuple[bool, dict[str, object]]]] = [
        lambda: (False, {"error": "no Kafka broker has answered yet", "member": member})
    ]
    host, port = settings.consumer_metrics_host, settings.consumer_metrics_port
    try:
        server = HealthServer(host, port, metrics)
    except OSError as exc:
        raise ListenError("CONSUMER_METRICS_HOST", "CONSUMER_METRICS_PORT", host, port, exc) from None
    with ExitStack() as resources:
        # First up, last down: /healthz answers while Kafka is being reached and until the very end.
        resources.callback(server.close)
        server.start(lambda: health[0]())
        log.info("health endpoint listening", extra={"url": f"http://{host}:{server.port}"})
        worker = StoreWorker(settings)
        worker.start()
        resources.callback(lambda: worker.close(max(0.5, stop.remaining())))
        redis = redis_client(settings)
        resources.callback(redis.close)
        writer = ActivityWriter(redis, KeySchema.of(settings), settings)
        kafka_consumer = _connect(settings, f"active-users-{member}", stop, metrics)
        if kafka_consumer is None:
            log.info("consumer stopped before Kafka answered", extra={"member": member})
            return 0
        # Everything committed is stored; nothing uncommitted is committed on the way out.
        resources.callback(
            lambda: kafka_consumer.close(autocommit=False, timeout_ms=int(max(0.5, stop.remaining()) * 1000))
        )
        loop = IngestLoop(settings, kafka_consumer, worker, writer, metrics, stop, member)
        health[0] = loop.health
        resources.callback(loop.forget)
        loop.run()
    code = 0 if loop.failure is None else EXIT_UNDECODABLE
    log.info("consumer stopped", extra={"member": member, "exitCode": code})
    return code


def _connect(settings: Settings, client_id: str, stop: StopRequest, metrics: ConsumerMetrics) -> Any | None:
    """The Kafka consumer once a broker answers (brokers that are down are waited for); None if stopped first."""
    made: list[Any] = []

    def attempt() -> None:
        made.append(new_consumer(settings, client_id))

    def failed(exc: BaseException) -> None:
        metrics.kafka_errors.inc()
        log.warning("kafka unreachable; retrying", extra={"error": f"{type(exc).__name__}: {exc}"})

    if until_done(attempt, (KafkaTimeoutError,), stop.wait, failed):
        return made[0]
    return None
