"""The consumer-group member: poll, classify, store, dead-letter, then commit exactly what is stored.

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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.store import ActivityWriter, redis_client
from consumer.deadletter import DeadLetterQueue
from consumer.ingest import Batch, Classifier
from consumer.kafka import new_consumer, new_producer
from consumer.metrics import ConsumerMetrics, HealthServer
from consumer.sink import KAFKA_TIMEOUT_S, Sink

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
THROUGHPUT_LOG_S = 10.0


class _AssignmentLog(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs assignment changes. Runs inside ``poll`` between batches, so no batch is ever in flight here."""

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


class IngestLoop:
    """One consumer-group member. ``run()`` returns when ``stop`` is set; resources belong to :func:`run_consumer`."""

    def __init__(
        self,
        settings: Settings,
        kafka_consumer: Any,
        writer: ActivityWriter,
        metrics: ConsumerMetrics,
        stop: threading.Event,
        member_id: str,
        dead_letters: DeadLetterQueue,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._consumer = kafka_consumer
        self._sink = Sink(writer, dead_letters, metrics, on_redis=lambda ok: self._set_redis(ok=ok))
        self._writer = writer
        self._metrics = metrics
        self._stop = stop
        self._member_id = member_id
        self._clock = clock
        self._classifier = Classifier(settings)
        self._listener = _AssignmentLog(lambda parts: metrics.assigned.set(len(parts)))
        now = time.monotonic()
        self._progress = _Progress(started=now, last_log=now)
        self._storer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._in_flight: tuple[Future[bool], Batch, float] | None = None
        self._redis_ok = True
        self._last_heartbeat = 0.0
        self._last_poll = now

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
                polled = self._consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
                self._last_poll = time.monotonic()
                if polled:
                    self.process(polled)
                else:
                    self.drain()
                self._housekeeping()
        finally:
            self.drain()
            self._storer.shutdown(wait=True)

    def process(self, polled: dict[Any, list[Any]]) -> None:
        """Classify one poll's records and hand them to the store thread, after committing the batch before.

        Storing batch N overlaps with fetching and classifying batch N+1 (Redis works on the other core, and
        redis-py waits on sockets without the GIL); offsets of N are committed only once N is stored.
        """
        started = time.perf_counter()
        batch = self._classifier.classify(polled, int(self._clock() * 1000))
        self.drain()
        self._in_flight = (self._storer.submit(self._sink.store, batch, self._stop), batch, started)

    def drain(self) -> bool:
        """Wait for the batch being stored and commit its offsets; False if it was dropped at shutdown."""
        if self._in_flight is None:
            return True
        future, batch, started = self._in_flight
        self._in_flight = None
        if not future.result():
            return False
        self._commit(batch)
        self._account(batch, time.perf_counter() - started)
        return True

    def health(self) -> tuple[bool, dict[str, object]]:
        """Whether this member can make progress: Redis writable and polling not stuck."""
        poll_age = time.monotonic() - self._last_poll
        ok = self._redis_ok and poll_age < self._settings.consumer_stale_s
        return ok, {"redis": self._redis_ok, "secondsSincePoll": round(poll_age, 3), "member": self._member_id}

    def _commit(self, batch: Batch) -> None:
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in batch.next_offsets.items()}
        try:
            self._consumer.commit(offsets)
        except KafkaError as exc:
            # Not committing is always safe: the records are stored and will only be stored again.
            self._metrics.kafka_errors.inc()
            log.warning("commit failed; records will be re-read", extra={"error": f"{type(exc).__name__}: {exc}"})

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
        for tp, next_offset in batch.next_offsets.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                label = f"{tp.topic}-{tp.partition}"
                p.lag[label] = max(0, highwater - next_offset)
                m.lag.labels(label).set(p.lag[label])

    def _housekeeping(self) -> None:
        now = time.monotonic()
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
        state: dict[str, object] = {
            "ts_ms": int(self._clock() * 1000),
            "group": self._settings.kafka_group_id,
            "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in self._listener.assigned),
            "lastEventMs": self._progress.newest_event_ms,
        }
        try:
            self._writer.heartbeat(self._member_id, state)
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
    """Start every resource, run the loop until ``stop``, then tear down in reverse order. Returns 0."""
    member = member_id()
    metrics = ConsumerMetrics()
    redis = redis_client(settings)
    writer = ActivityWriter(redis, KeySchema(settings.redis_key_prefix, settings.activity_timezone), settings)
    producer = new_producer(settings, f"active-users-dlq-{member}")
    try:
        dead_letters = DeadLetterQueue(producer, settings.kafka_dlq_topic)
        kafka_consumer = new_consumer(settings, f"active-users-{member}")
        try:
            loop = IngestLoop(settings, kafka_consumer, writer, metrics, stop, member, dead_letters)
            server = HealthServer(settings.consumer_metrics_host, settings.consumer_metrics_port, metrics, loop.health)
            server.start()
            log.info("health endpoint listening", extra={"url": f"http://{settings.consumer_metrics_host}:{server.port}"})
            try:
                loop.run()
            finally:
                loop.forget()
                server.close()
        finally:
            # Everything committed is stored; nothing uncommitted is committed on the way out.
            kafka_consumer.close(autocommit=False, timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
    finally:
        DeadLetterQueue(producer, settings.kafka_dlq_topic).close(KAFKA_TIMEOUT_S)
        redis.close()
    log.info("consumer stopped", extra={"member": member})
    return 0
