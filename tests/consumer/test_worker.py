"""The store worker process: stores batches in the real Redis, dead-letters to the real broker, reports outages,
drops on shutdown."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from activeusers.keys import KeySchema
from activeusers.settings import Settings
from consumer.deadletter import HEADER_OFFSET
from consumer.ingest import RecordSlice
from consumer.shutdown import StopRequest
from consumer.worker import StoreWorker, WorkerFailed
from tests.support.indexstate import bucket_state
from tests.support.oracle import index_label, oracle
from tests.support.topics import read_topic


def _slices(now_ms: int) -> list[RecordSlice]:
    login = orjson.dumps({"type": "login", "userId": "w1", "ts": now_ms - 1000})
    other = orjson.dumps({"type": "other", "userId": "w2", "ts": now_ms})
    return [
        RecordSlice("src", 0, [7, 8], [b"a", b"b"], [login, b"not json"]),
        RecordSlice("src", 3, [40, 42], [None, b"d"], [other, None]),
    ]


def _ignore(*args: object) -> None:
    return None


def test_worker_stores_a_batch_dead_letters_and_summarises_it(stack, topic, redis_prefix, redis_client):
    dlq = topic(1)
    settings = Settings(
        redis_url=stack.redis_url,
        redis_key_prefix=redis_prefix,
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        kafka_dlq_topic=dlq,
    )
    worker = StoreWorker(settings)
    worker.start()
    try:
        now_ms = int(time.time() * 1000)
        worker.submit(now_ms, _slices(now_ms))
        stored = worker.wait(StopRequest(), _ignore, _ignore)
    finally:
        worker.close()
    assert stored is not None
    assert (stored.records, stored.stored_events, stored.skipped) == (4, 1, {"unknown_type": 1})
    assert stored.dead_lettered == {"not_json": 1, "empty": 1}
    assert stored.newest_event_ms == now_ms - 1000
    keys = KeySchema(redis_prefix, "UTC")
    login = {"type": "login", "userId": "w1", "ts": now_ms - 1000}
    expected = oracle([login], keys, ZoneInfo("UTC"), now_ms, settings.retention_days)
    assert expected[index_label("day", datetime.fromtimestamp(login["ts"] / 1000, UTC).date().isoformat())] == {"w1"}
    assert bucket_state(redis_client, keys) == expected  # its day, hour and name; no day set
    dead = read_topic(stack.kafka_bootstrap, dlq, 2)
    assert sorted((r.key, r.value, dict(r.headers)[HEADER_OFFSET]) for r in dead) == [
        (b"b", b"not json", b"8"),
        (b"d", None, b"42"),
    ]


@contextlib.contextmanager
def _storing_without_redis() -> Iterator[StoreWorker]:
    """A worker whose Redis does not answer, given one batch (which it retries until stopped)."""
    worker = StoreWorker(Settings(redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.2))
    worker.start()
    try:
        now_ms = int(time.time() * 1000)
        worker.submit(now_ms, _slices(now_ms))
        yield worker
    finally:
        worker.close()


def test_worker_reports_redis_down_and_drops_the_batch_on_stop():
    reports: list[bool] = []
    stop = StopRequest()

    def on_redis(ok: bool, error: str) -> None:
        reports.append(ok)
        assert error
        stop.set()

    with _storing_without_redis() as worker:
        assert worker.wait(stop, on_redis, _ignore) is None
    assert reports and not any(reports)


def test_a_wait_with_a_timeout_ends_without_the_answer_and_the_next_wait_gets_it():
    reports: list[bool] = []
    stop = StopRequest()
    with _storing_without_redis() as worker:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            worker.wait(stop, lambda ok, error: reports.append(ok), _ignore, timeout_s=1.0)
        assert 1.0 <= time.monotonic() - started < 3
        deadline = time.monotonic() + 30  # the worker process may still be starting
        while not reports:
            assert time.monotonic() < deadline, "the worker never reported the failed write"
            with pytest.raises(TimeoutError):
                worker.wait(stop, lambda ok, error: reports.append(ok), _ignore, timeout_s=0.2)
        assert not any(reports), "a report that comes before the answer is passed on"
        stop.set()
        assert worker.wait(stop, _ignore, _ignore) is None  # the same batch's answer: dropped at the stop


def test_a_dead_worker_is_an_error_not_a_hang():
    worker = StoreWorker(Settings())
    worker.start()
    worker._process.kill()
    worker._process.join(5)
    try:
        with pytest.raises(WorkerFailed, match=r"exited|pipe"):
            worker.wait(StopRequest(), _ignore, _ignore)
    finally:
        worker.close()
