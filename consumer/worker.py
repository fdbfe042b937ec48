"""The store worker: a child process that classifies records, writes them to Redis and dead-letters the bad ones.

CPython runs one thread at a time per process, and kafka-python's fetching alone keeps one core busy; decoding,
sorting into user sets, Redis writes and dead-letter publishing (kafka-python is slow per record) therefore
run in this second process, beside the parent's next fetch. The parent keeps the records and commits offsets;
the worker returns a small summary and never acknowledges a batch before Redis and the dead-letter topic have it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from activeusers.clusterstats import ClusterCounts, cluster_counts
from activeusers.connections import REDIS_ERRORS, SyncClient, redis_client
from activeusers.errors import StoreUnavailable
from activeusers.logs import configure
from activeusers.settings import Settings
from activeusers.writer import ActivityWriter
from consumer.deadletter import DeadLetterQueue
from consumer.ingest import Batch, Classifier, RecordSlice
from consumer.kafka import KAFKA_TIMEOUT_S, new_producer
from consumer.shutdown import StopRequest
from consumer.storing import store_batch

log = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")  # the parent has threads (kafka-python's); never fork it
_WAIT_SLICE_S = 0.2


class WorkerFailed(RuntimeError):
    """The store worker died or raised; the consumer must stop without committing the batch in flight."""


@dataclass(frozen=True, slots=True)
class Stored:
    """The worker's whole answer for a batch whose effects are all in Redis and the dead-letter topic: counts for
    the metrics (the member computes the offsets to commit itself, from the records it handed over)."""

    records: int
    stored_events: int
    skipped: dict[str, int]
    dead_lettered: dict[str, int]  # per reason
    newest_event_ms: int
    ignored_values: int = 0

    @classmethod
    def of(cls, batch: Batch) -> Stored:
        """Summarise a stored batch for the member (the user sets and the dead letters stay in the worker)."""
        return cls(
            batch.records,
            batch.stored_events,
            dict(batch.skipped),
            dict(Counter(letter.reason for letter in batch.dead_letters)),
            batch.user_sets.newest_event_ms,
            batch.ignored_values,
        )


class StoreWorker:
    """The parent's handle on the worker process: submit one batch, wait for it, repeat. ``cluster`` holds what
    the worker's Redis Cluster client reported last (None until then, and for a single server)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.cluster: ClusterCounts | None = None
        self._conn, child = _CONTEXT.Pipe()
        self._stop = _CONTEXT.Event()
        self._process = _CONTEXT.Process(
            target=_serve, args=(child, settings, self._stop, os.getpid()), name="store-worker", daemon=True
        )
        self._child = child
        self._abandoned = False

    def start(self) -> None:
        """Start the worker process."""
        self._process.start()
        self._child.close()

    def submit(self, now_ms: int, slices: Sequence[RecordSlice]) -> None:
        """Hand a batch (its records per partition) to the worker."""
        self._conn.send((now_ms, slices))

    def wait(
        self,
        stop: StopRequest,
        on_redis: Callable[[bool, str], None],
        on_kafka: Callable[[str], None],
        reserve_s: float = 0.0,
        timeout_s: float | None = None,
    ) -> Stored | None:
        """The batch's summary once stored and dead-lettered, or None if dropped because ``stop`` was set.

        Once ``stop`` is set the worker stops retrying; should it still be busy (a Redis call or a dead-letter
        send that takes its full timeout) when only ``reserve_s`` of the stop budget is left, the batch is
        given up as dropped and the worker is killed at :meth:`close`. With ``timeout_s``, raises
        ``TimeoutError`` when the worker has not answered by then: the batch is still the worker's, and the
        next call waits for the same answer.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._abandoned:
                return None
            if stop.is_set():
                self._stop.set()
                if stop.remaining(reserve_s) <= 0:
                    log.warning("store worker still busy at the stop deadline; its batch is dropped uncommitted")
                    self._abandoned = True
                    return None
            slice_s = _WAIT_SLICE_S if deadline is None else min(_WAIT_SLICE_S, max(0.0, deadline - time.monotonic()))
            if not self._conn.poll(slice_s):
                if not self._process.is_alive():
                    raise WorkerFailed(f"store worker exited with code {self._process.exitcode}")
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("the store worker has not answered yet")
                continue
            try:
                message = self._conn.recv()
            except EOFError as exc:
                raise WorkerFailed("store worker closed its pipe") from exc
            kind = message[0]
            if kind == "redis":
                on_redis(message[1], message[2])
            elif kind == "kafka":
                on_kafka(message[1])
            elif kind == "cluster":
                self.cluster = message[1]
            elif kind == "stored":
                return message[1]  # type: ignore[no-any-return]
            elif kind == "dropped":
                return None
            else:
                raise WorkerFailed(f"store worker failed:\n{message[1]}")

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to finish and wait up to ``timeout_s`` for it, then kill it (it ignores SIGTERM).

        Killing loses nothing: every batch it acknowledged is stored, and any other is uncommitted.
        """
        self._stop.set()
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(None)
        self._process.join(0 if self._abandoned else timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()


def _receive(conn: Connection, inbox: queue.SimpleQueue[Any]) -> None:
    try:
        while True:
            message = conn.recv()
            inbox.put(message)
            if message is None:
                return
    except (EOFError, OSError):
        inbox.put(None)  # the parent is gone: stop


class _Storer:
    """The worker's side: classify a batch, write it to Redis, publish its dead letters, each until done."""

    def __init__(self, conn: Connection, settings: Settings, stop: Any, parent_pid: int) -> None:
        self._conn = conn
        self._settings = settings
        self._stop = stop
        self._parent_pid = parent_pid
        # Made at the first write, inside its retries: a cluster client reads the slot map when it is made, so a
        # cluster that is unreachable then is waited for like a single server that is down.
        self._redis: SyncClient | None = None
        self._writer: ActivityWriter | None = None
        self._reported: ClusterCounts | None = None
        self._classifier = Classifier(settings)
        self._dead_letters: DeadLetterQueue | None = None  # connected at the first malformed record

    def store(self, now_ms: int, slices: Sequence[RecordSlice]) -> None:
        """Store one batch and answer the parent: ``stored`` with the summary, or ``dropped`` at shutdown."""
        batch = self._classifier.classify(slices, now_ms)
        redis_failed = False

        def failed(exc: BaseException) -> None:
            nonlocal redis_failed
            if isinstance(exc, StoreUnavailable):
                redis_failed = True
                self._report_cluster()
                self._conn.send(("redis", False, str(exc)))
            else:
                self._conn.send(("kafka", f"{type(exc).__name__}: {exc}"))

        def written() -> None:
            self._report_cluster()
            if redis_failed:
                self._conn.send(("redis", True, ""))

        done = store_batch(
            batch,
            lambda sets: self._store_writer().write(sets),
            lambda letters: self._dead_letter_queue().publish(letters, KAFKA_TIMEOUT_S),
            self._wait_for_stop,
            failed,
            written,
        )
        if done:
            self._conn.send(("stored", Stored.of(batch)))
        else:
            self._report_cluster()
            self._conn.send(("dropped",))

    def close(self) -> None:
        """Flush the dead-letter producer and close the connections."""
        if self._dead_letters is not None:
            self._dead_letters.close(KAFKA_TIMEOUT_S)
        if self._redis is not None:
            self._redis.close()

    def _store_writer(self) -> ActivityWriter:
        if self._writer is None:
            try:
                self._redis = redis_client(self._settings)
            except REDIS_ERRORS as exc:
                raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
            self._writer = ActivityWriter.of(self._redis, self._settings)
        return self._writer

    def _report_cluster(self) -> None:
        """Send the parent the cluster client's counts when they changed (nothing for a single server)."""
        counts = cluster_counts(self._redis) if self._redis is not None else None
        if counts is not None and counts != self._reported:
            self._reported = counts
            self._conn.send(("cluster", counts))

    def _dead_letter_queue(self) -> DeadLetterQueue:
        if self._dead_letters is None:
            self._dead_letters = DeadLetterQueue(
                new_producer(self._settings, f"active-users-dlq-{os.getppid()}"), self._settings.kafka_dlq_topic
            )
        return self._dead_letters

    def _wait_for_stop(self, seconds: float) -> bool:
        return bool(self._stop.wait(seconds)) or os.getppid() != self._parent_pid


def _serve(conn: Connection, settings: Settings, stop: Any, parent_pid: int) -> None:
    # Signals are the parent's to handle: a Ctrl-C reaches the whole process group, and the parent decides
    # whether the batch in flight is finished or dropped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure(settings.log_level)
    storer = _Storer(conn, settings, stop, parent_pid)
    # Receiving on its own thread: the parent's next batch is read off the pipe while this one is stored, so the
    # parent's send never waits for the store (a batch is far larger than the pipe's buffer).
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(conn, inbox), name="receive", daemon=True).start()
    try:
        while (message := inbox.get()) is not None:
            storer.store(*message)
    except (BrokenPipeError, EOFError):
        return
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("crashed", traceback.format_exc()))
        raise
    finally:
        storer.close()
