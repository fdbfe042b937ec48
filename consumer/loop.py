"""The consumer-group member: poll, hand to the store worker, then commit exactly what it stored.

Delivery is at least once: an offset is committed only after the batch's Redis writes and dead letters are
acknowledged, and a batch that cannot be stored is retried (fetching stopped meanwhile) or, on shutdown,
dropped uncommitted so that the next owner of the partition reads it again. Set additions are idempotent, so
replaying a batch changes nothing and the stored result is exact.

Before a rebalance moves partitions on, the member finishes its batches in flight and commits them, waiting for
the broker (``IngestLoop._hand_over``), so the next owner starts where this one stopped and no commit of this
member's lands after the next owner's.

A fetch the client cannot decode ends the member (see :mod:`consumer.undecodable`): what was stored before it
is committed, nothing after, and ``consume`` exits with ``EXIT_UNDECODABLE`` for a supervisor to act on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, TypeVar

from kafka.errors import KafkaTimeoutError

from activeusers.clusterstats import cluster_counts
from activeusers.connections import REDIS_ERRORS, redis_client
from activeusers.errors import ListenError
from activeusers.heartbeats import Heartbeats
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from consumer.assignment import Assignment, label, labels
from consumer.commits import Commits, Reach
from consumer.ingest import ConsumedRecord
from consumer.kafka import listener_tick, new_consumer
from consumer.liveness import Liveness
from consumer.metrics import ConsumerMetrics, HealthServer
from consumer.pipeline import Pipeline
from consumer.polling import Poller
from consumer.retry import until_done
from consumer.shutdown import EXIT_UNDECODABLE, StopRequest
from consumer.throughput import Throughput
from consumer.undecodable import UndecodableFetch
from consumer.worker import Stored, StoreWorker

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a rebalance waits for the batches in flight before it gives them up (the whole group waits meanwhile;
# far below the rebalance timeout, kafka-python's max_poll_interval_ms of 300 s).
HAND_OVER_WAIT_S = 5.0


class IngestLoop:
    """One consumer-group member: polls, and wires the parts that own the rest: the batches in flight to the
    store worker (:class:`~consumer.pipeline.Pipeline`), the offsets to commit (:class:`~consumer.commits.Commits`),
    the metrics and throughput line (:class:`~consumer.throughput.Throughput`) and the heartbeat
    (:class:`~consumer.liveness.Liveness`). ``run()`` returns when ``stop`` is set; resources belong to
    :func:`run_consumer`."""

    def __init__(
        self,
        settings: Settings,
        kafka_consumer: Any,
        worker: StoreWorker,
        heartbeats: Heartbeats,
        metrics: ConsumerMetrics,
        stop: StopRequest,
        member_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._consumer = kafka_consumer
        self._stop = stop
        self._member_id = member_id
        self.assignment = Assignment(lambda owned: metrics.assigned.set(len(owned)), self._hand_over, self._lose)
        self._poller = Poller(kafka_consumer, metrics, stop)
        self._commits = Commits(kafka_consumer, self.assignment, metrics, stop)
        self._throughput = Throughput(kafka_consumer, self.assignment, metrics)
        self._liveness = Liveness(settings, heartbeats, self.assignment, metrics, member_id, clock)
        self._pipeline = Pipeline(worker, stop, metrics, self._on_stored, self._on_redis, clock)
        self._finished = False

    def run(self) -> None:
        """Consume until ``stop`` is set. Every committed offset has its effects stored."""
        self._consumer.subscribe([self._settings.kafka_topic], listener=self.assignment)
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
                elif self.drain():
                    # Nothing in flight: commit the positions the client moved past records it does not return
                    # (the transaction marker after a partition's last record, aborted records).
                    self._throughput.update_lag(self._commits.stored(self._reach(polled)))
                self._commits.retry_failed()
                self._liveness.beat_if_due(self._throughput.newest_event_ms)
                self._throughput.log_if_due()
        finally:
            self._finished = True
            if self.drain():
                self._commits.commit_final()

    def process(self, polled: Mapping[Any, Sequence[ConsumedRecord]]) -> None:
        """Hand one poll's records to the store worker (waiting for the oldest batch if too many are in flight)."""
        self._pipeline.submit(polled, self._reach(polled))

    def drain(self) -> bool:
        """Finish every batch in flight; False if one was dropped (uncommitted) because of shutdown."""
        return self._pipeline.drain()

    @property
    def failure(self) -> UndecodableFetch | None:
        """The fetch that could not be decoded, which ended the run (None while every fetch decodes)."""
        return self._poller.failure

    def health(self) -> tuple[bool, dict[str, object]]:
        """Whether this member can make progress: Redis writable, polling not stuck, every fetch decodable."""
        failure = self._poller.failure
        poll_age = time.monotonic() - self._poller.last_success
        redis_ok = self._liveness.redis_ok
        ok = failure is None and redis_ok and poll_age < self._settings.consumer_stale_s
        detail: dict[str, object] = {
            "redis": redis_ok,
            "secondsSincePoll": round(poll_age, 3),
            "member": self._member_id,
        }
        if failure is not None:
            detail["error"] = failure.reason()
        return ok, detail

    def forget(self) -> None:
        """Withdraw this member's heartbeat (best effort, on a clean stop)."""
        self._liveness.forget()

    def _reach(self, polled: Mapping[Any, Sequence[ConsumedRecord]]) -> Reach:
        full = sum(map(len, polled.values())) >= self._settings.batch_size
        return self._commits.reach(polled, with_positions=not full and self._poller.failure is None)

    async def _hand_over(self, revoked: set[Any]) -> None:
        """Before ``revoked`` goes to the group: finish the batches in flight, then commit the revoked partitions
        and wait for the broker, so that their next owner starts from everything stored.

        kafka-python awaits this on its IO thread while :meth:`run` waits inside ``poll()`` (or ``close()``), so
        the pipeline and the commits are this coroutine's alone meanwhile. The batches are waited for at most
        ``HAND_OVER_WAIT_S`` (the group waits meanwhile; the store worker retries Redis for as long as it is
        down): those still in flight are voided (answered later, they commit nothing, and their records are read
        again by the partitions' next owner: uncommitted means re-read). A stop request instead bounds the wait
        by the stop budget, as for the final commit.
        """
        if self._finished:
            return  # close(): run() has finished (or dropped) every batch and made the final commit
        tick = listener_tick(self._consumer)
        deadline = time.monotonic() + HAND_OVER_WAIT_S
        while not self._pipeline.finish_answered(0.0):
            if time.monotonic() >= deadline and not self._stop.is_set():
                voided = self._pipeline.void()
                log.warning(
                    "batches in flight given up at a rebalance; they will be read again", extra={"batches": voided}
                )
                break
            await tick()
        committed = await self._commits.hand_over(revoked, tick)
        log.info(
            "partitions handed over",
            extra={
                "partitions": labels(revoked),
                "committed": {label(tp): offset for tp, offset in committed.items()},
            },
        )

    def _lose(self, lost: set[Any]) -> None:
        # The membership is gone (evicted): the group has given the partitions to others already and would refuse
        # a commit, so nothing is waited for; the batches in flight commit nothing once answered.
        voided = self._pipeline.void()
        self._commits.forget(lost)
        if voided:
            log.warning(
                "batches in flight given up with the lost partitions; they will be read again",
                extra={"batches": voided},
            )

    def _on_stored(self, stored: Stored, reach: Reach, seconds: float) -> None:
        self._throughput.account(stored, self._commits.stored(reach), seconds)

    def _on_redis(self, ok: bool) -> None:
        self._liveness.set_redis(ok=ok)


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
        lambda: (False, {"error": "Redis has not answered yet", "member": member})
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
        # A single server's client connects at its first command; a cluster's reads the slot map now.
        redis = _when_reachable(
            "redis", lambda: redis_client(settings), REDIS_ERRORS, stop, lambda: metrics.redis_up.set(0)
        )
        if redis is None:
            log.info("consumer stopped before Redis answered", extra={"member": member})
            return 0
        resources.callback(redis.close)
        # The store worker's client does the writes: its counts once it reported them, this process's before.
        metrics.track_redis(lambda: worker.cluster or cluster_counts(redis))
        heartbeats = Heartbeats(redis, KeySchema.of(settings), settings)
        health[0] = lambda: (False, {"error": "no Kafka broker has answered yet", "member": member})
        client_id = f"active-users-{member}"
        kafka_consumer = _when_reachable(
            "kafka", lambda: new_consumer(settings, client_id), (KafkaTimeoutError,), stop, metrics.kafka_errors.inc
        )
        if kafka_consumer is None:
            log.info("consumer stopped before Kafka answered", extra={"member": member})
            return 0
        # Everything committed is stored; nothing uncommitted is committed on the way out.
        resources.callback(
            lambda: kafka_consumer.close(autocommit=False, timeout_ms=int(max(0.5, stop.remaining()) * 1000))
        )
        loop = IngestLoop(settings, kafka_consumer, worker, heartbeats, metrics, stop, member)
        health[0] = loop.health
        resources.callback(loop.forget)
        loop.run()
    code = 0 if loop.failure is None else EXIT_UNDECODABLE
    log.info("consumer stopped", extra={"member": member, "exitCode": code})
    return code


def _when_reachable(
    service: str,
    make: Callable[[], T],
    retry_on: tuple[type[BaseException], ...],
    stop: StopRequest,
    on_failure: Callable[[], object],
) -> T | None:
    """``make()`` once ``service`` answers (while it is down, each failure is counted by ``on_failure``, logged
    and retried with backoff); None if stopped first."""
    made: list[T] = []

    def attempt() -> None:
        made.append(make())

    def failed(exc: BaseException) -> None:
        on_failure()
        log.warning(f"{service} unreachable; retrying", extra={"error": f"{type(exc).__name__}: {exc}"})

    if until_done(attempt, retry_on, stop.wait, failed):
        return made[0]
    return None
