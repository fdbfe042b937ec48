"""The store worker process: stores batches in the real Redis, reports outages, drops on shutdown."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from activeusers.keys import KeySchema
from activeusers.settings import Settings
from consumer.worker import StoreWorker, WorkerFailed


def _values(now_ms: int) -> list[list[bytes | None]]:
    login = orjson.dumps({"type": "login", "userId": "w1", "ts": now_ms - 1000})
    return [[login, b"not json"], [orjson.dumps({"type": "other", "userId": "w2", "ts": now_ms}), None]]


def test_worker_stores_a_batch_and_summarises_it(stack, redis_prefix, redis_client):
    settings = Settings(redis_url=stack.redis_url, redis_key_prefix=redis_prefix)
    worker = StoreWorker(settings)
    worker.start()
    try:
        now_ms = int(time.time() * 1000)
        worker.submit(now_ms, _values(now_ms))
        stored = worker.wait(threading.Event(), lambda ok, error: None)
    finally:
        worker.close()
    assert stored is not None
    assert (stored.records, stored.stored_events, stored.skipped) == (4, 1, {"unknown_type": 1})
    assert [(p, i, reason) for p, i, reason, _ in stored.dead] == [(0, 1, "not_json"), (1, 1, "empty")]
    keys = KeySchema(redis_prefix, "UTC")
    assert any(redis_client.smembers(k) == {"w1"} for k in redis_client.scan_iter(keys.prefix + "day:*"))


def test_worker_reports_redis_down_and_drops_the_batch_on_stop():
    settings = Settings(redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.2)
    worker = StoreWorker(settings)
    worker.start()
    reports: list[bool] = []
    stop = threading.Event()

    def on_redis(ok: bool, error: str) -> None:
        reports.append(ok)
        assert error
        stop.set()

    try:
        now_ms = int(time.time() * 1000)
        worker.submit(now_ms, _values(now_ms))
        assert worker.wait(stop, on_redis) is None
    finally:
        worker.close()
    assert reports and not any(reports)


def test_a_dead_worker_is_an_error_not_a_hang():
    worker = StoreWorker(Settings())
    worker.start()
    worker._process.kill()
    worker._process.join(5)
    try:
        with pytest.raises(WorkerFailed, match=r"exited|pipe"):
            worker.wait(threading.Event(), lambda ok, error: None)
    finally:
        worker.close()
