"""The consumer-group member: poll, hand to the store worker, then commit exactly what it stored.

Delivery is at least once: an offset is committed only after the batch's Redis writes and dead letters are
acknowledged, and a batch that cannot be stored is retried (fetching stopped meanwhile) or, on shutdown,
dropped uncommitted so that the next owner of the partition reads it again. Set additions are idempotent, so
replaying a batch changes nothing and the stored result is exact.
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
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from activeusers.errors import ListenError, StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.store import ActivityWriter, redis_client
from consumer.ingest import Batch, Outcome, Record, batch_from, slices_of
from consumer.kafka import KAFKA_TIMEOUT_S, new_consumer
from consumer.metrics import ConsumerMetrics, HealthServer
from consumer.polling import Poller
from consumer.worker import StoreWorker

log = logging.getLogger(__name__)

THROUGHPUT_LOG_S = 10.0
RECOMMIT_S = 1.0
IN_FLIGHT = 2


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
    """The batch the store worker has: its records (for offsets and dead-letter metrics) and when it was polled."""

    polled: Mapping[Any, Sequence[Record]]
    started: float


class IngestLoop:
    """One consumer-group member. ``run()`` returns when ``stop`` is set; resources belong to :func:`run_consumer`."""

    def __init__(
        self,
        settings: Settings,
        kafka_consumer: Any,
        worker: StoreWorker,
        writer: ActivityWriter,
        metrics: ConsumerMetrics,
        stop: threading.Event,
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
                polled = self._poller.poll()
                if polled:
                    self.process(polled)
                else:
                    self.drain()
                self._housekeeping()
        finally:
            if self.drain():
                self.commit_sync()

    def process(self, polled: Mapping[Any, Sequence[Record]]) -> None:
        """Hand one poll's records to the store worker; finish the oldest batch once too many are in flight.

        The worker decodes and writes batch N while this process fetches N+1 and N+2; with two batches queued,
        the worker never waits for this process and this process waits only when the worker is behind. Offsets
        are committed in batch order, each only once the worker has stored its batch.
        """
        started = time.perf_counter()
        self._worker.submit(int(self._clock() * 1000), slices_of(polled))
        self._in_flight.append(_InFlight(polled, started))
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
        stored = self._worker.wait(self._stop, self._on_worker_redis, self._on_kafka_failure)
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
        self._commit(batch)
        self._account(batch, time.perf_counter() - flight.started)

    def commit_sync(self) -> None:
        """Commit the latest stored offsets and wait for the broker (on the way out)."""
        offsets = self._owned_offsets()
        if not offsets:
            return
        try:
            self._consumer.commit(offsets, timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
        except KafkaError as exc:
            self._on_commit_failure(exc)

    def _owned_offsets(self) -> dict[Any, OffsetAndMetadata]:
        """The latest stored offset of every partition this member still owns."""
        assigned = set(self._listener.assigned)
        self._committed = {tp: offset for tp, offset in self._committed.items() if tp in assigned}
        return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._committed.items()}

    def health(self) -> tuple[bool, dict[str, object]]:
        """Whether this member can make progress: Redis writable and polling not stuck."""
        poll_age = time.monotonic() - self._poller.last_success
        ok = self._redis_ok and poll_age < self._settings.consumer_stale_s
        return ok, {"redis": self._redis_ok, "secondsSincePoll": round(poll_age, 3), "member": self._member_id}

    def _commit(self, batch: Batch) -> None:
        # Asynchronous: a commit that fails is harmless (stored records are only re-read and re-stored), and
        # not waiting for the coordinator keeps a round trip per batch off the fetch path.
        self._committed.update(batch.next_offsets)
        self._commit_async({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in batch.next_offsets.items()})

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
        assigned = set(self._listener.assigned)
        for tp, next_offset in batch.next_offsets.items():
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


def run_consumer(settings: Settings, stop: threading.Event) -> int:
    """Start every resource, run the loop until ``stop``, then tear down in reverse order. Returns 0.

    The metrics port is bound first: a port that is taken ends the start-up before anything else runs
    (:class:`ListenError`, which the command line prints as one line).
    """
    member = member_id()
    metrics = ConsumerMetrics()
    host, port = settings.consumer_metrics_host, settings.consumer_metrics_port
    try:
        server = HealthServer(host, port, metrics)
    except OSError as exc:
        raise ListenError("CONSUMER_METRICS_HOST", "CONSUMER_METRICS_PORT", host, port, exc) from None
    with ExitStack() as resources:
        resources.callback(server.close)
        worker = StoreWorker(settings)
        worker.start()
        resources.callback(worker.close)
        redis = redis_client(settings)
        resources.callback(redis.close)
        writer = ActivityWriter(redis, KeySchema(settings.redis_key_prefix, settings.activity_timezone), settings)
        kafka_consumer = new_consumer(settings, f"active-users-{member}")
        # Everything committed is stored; nothing uncommitted is committed on the way out.
        resources.callback(kafka_consumer.close, autocommit=False, timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
        loop = IngestLoop(settings, kafka_consumer, worker, writer, metrics, stop, member)
        server.start(loop.health)
        log.info("health endpoint listening", extra={"url": f"http://{host}:{server.port}"})
        resources.callback(loop.forget)
        loop.run()
    log.info("consumer stopped", extra={"member": member})
    return 0
