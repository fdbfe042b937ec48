"""The store worker: a child process that classifies record values and writes them to Redis.

CPython runs one thread at a time per process, and kafka-python's fetching alone keeps one core busy; decoding,
bucketing and Redis writes therefore run in this second process, beside the parent's next fetch. The parent
keeps the records, commits offsets and publishes dead letters; the worker only ever sees values, returns a
small summary, and never acknowledges a batch before Redis has it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.logs import configure
from activeusers.settings import Settings
from activeusers.store import ActivityWriter, redis_client
from consumer.ingest import Classifier, Outcome
from consumer.retry import until_done

log = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")  # the parent has threads (kafka-python's); never fork it
_WAIT_SLICE_S = 0.2


class WorkerFailed(RuntimeError):
    """The store worker died or raised; the consumer must stop without committing the batch in flight."""


@dataclass(frozen=True, slots=True)
class Stored:
    """The worker's answer for a batch whose effects are all in Redis."""

    stored_events: int
    records: int
    skipped: dict[str, int]
    dead: list[tuple[int, int, str, str]]
    newest_event_ms: int

    @classmethod
    def of(cls, outcome: Outcome) -> Stored:
        """Summarise an outcome for the parent (the buckets stay in the worker)."""
        return cls(
            outcome.stored_events,
            outcome.records,
            dict(outcome.skipped),
            outcome.dead,
            outcome.buckets.newest_event_ms,
        )


class StoreWorker:
    """The parent's handle on the worker process: submit one batch, wait for it, repeat."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn, child = _CONTEXT.Pipe()
        self._stop = _CONTEXT.Event()
        self._process = _CONTEXT.Process(
            target=_serve, args=(child, settings, self._stop, os.getpid()), name="store-worker", daemon=True
        )
        self._child = child

    def start(self) -> None:
        """Start the worker process."""
        self._process.start()
        self._child.close()

    def submit(self, now_ms: int, values: Sequence[Sequence[bytes | None]]) -> None:
        """Hand a batch (record values per partition) to the worker."""
        self._conn.send((now_ms, values))

    def wait(self, stop: threading.Event, on_redis: Callable[[bool, str], None]) -> Stored | None:
        """The batch's summary once stored, or None if it was dropped because ``stop`` was set meanwhile."""
        while True:
            if stop.is_set():
                self._stop.set()
            if not self._conn.poll(_WAIT_SLICE_S):
                if not self._process.is_alive():
                    raise WorkerFailed(f"store worker exited with code {self._process.exitcode}")
                continue
            try:
                message = self._conn.recv()
            except EOFError as exc:
                raise WorkerFailed("store worker closed its pipe") from exc
            kind = message[0]
            if kind == "redis":
                on_redis(message[1], message[2])
            elif kind == "stored":
                return message[1]  # type: ignore[no-any-return]
            elif kind == "dropped":
                return None
            else:
                raise WorkerFailed(f"store worker failed:\n{message[1]}")

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to finish and wait for it (terminate it if it does not)."""
        self._stop.set()
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(None)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout_s)
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


def _serve(conn: Connection, settings: Settings, stop: Any, parent_pid: int) -> None:
    # Signals are the parent's to handle: a Ctrl-C reaches the whole process group, and the parent decides
    # whether the batch in flight is finished or dropped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure(settings.log_level)
    redis = redis_client(settings)
    writer = ActivityWriter(redis, KeySchema(settings.redis_key_prefix, settings.activity_timezone), settings)
    classifier = Classifier(settings)

    def wait_for_stop(seconds: float) -> bool:
        return bool(stop.wait(seconds)) or os.getppid() != parent_pid

    def report_failure(exc: BaseException) -> None:
        conn.send(("redis", False, str(exc)))

    # Receiving on its own thread: the parent's next batch is read off the pipe while this one is stored, so the
    # parent's send never waits for the store (a batch is far larger than the pipe's buffer).
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(conn, inbox), name="receive", daemon=True).start()
    try:
        while True:
            message = inbox.get()
            if message is None:
                return
            now_ms, values = message
            outcome = classifier.classify_values(values, now_ms)
            failures: list[BaseException] = []

            def write(outcome: Outcome = outcome) -> None:
                if outcome.buckets:
                    writer.write(outcome.buckets)

            def failed(exc: BaseException, failures: list[BaseException] = failures) -> None:
                failures.append(exc)
                report_failure(exc)

            if not until_done(write, (StoreUnavailable,), wait_for_stop, failed):
                conn.send(("dropped",))
                continue
            if failures:
                conn.send(("redis", True, ""))
            conn.send(("stored", Stored.of(outcome)))
    except (BrokenPipeError, EOFError):
        return
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("crashed", traceback.format_exc()))
        raise
    finally:
        redis.close()
