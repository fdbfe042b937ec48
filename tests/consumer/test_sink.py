"""Retrying a batch until it is stored, or giving it up uncommitted on shutdown (pure logic)."""

from __future__ import annotations

import threading
from datetime import date
from itertools import pairwise

import fakeredis
import pytest

from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.store import ActivityWriter
from consumer import sink as sink_module
from consumer.ingest import Batch
from consumer.metrics import ConsumerMetrics
from consumer.sink import Sink, backoff_delays


class _FlakyWriter(ActivityWriter):
    def __init__(self, failures: int) -> None:
        settings = Settings(retention_days=100_000)  # the fixed test day must not be expired already
        super().__init__(fakeredis.FakeRedis(), KeySchema("p:", "UTC"), settings)
        self.failures = failures
        self.calls = 0

    def write(self, buckets):
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreUnavailable("connection refused")
        super().write(buckets)


def _batch() -> Batch:
    batch = Batch()
    batch.buckets.add_active(date(2024, 2, 29), 23, "u1", 1_709_247_600_000)
    return batch


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(sink_module, "BACKOFF_FIRST_S", 0.001)
    monkeypatch.setattr(sink_module, "backoff_delays", lambda: backoff_delays(0.001, 0.002))


def test_store_retries_until_redis_accepts_and_reports_the_state():
    writer = _FlakyWriter(failures=3)
    states: list[bool] = []
    metrics = ConsumerMetrics()
    assert Sink(writer, None, metrics, on_redis=states.append).store(_batch(), threading.Event())
    assert writer.calls == 4
    assert states == [False, False, False, True]
    assert metrics.store_errors._value.get() == 3
    assert writer._client.smembers("p:day:UTC:2024-02-29") == {b"u1"}


def test_store_gives_up_uncommitted_when_stopping():
    writer = _FlakyWriter(failures=10**9)
    stop = threading.Event()
    stop.set()
    assert not Sink(writer, None, ConsumerMetrics()).store(_batch(), stop)
    assert writer.calls == 1


def test_backoff_grows_to_its_cap_with_jitter():
    delay = backoff_delays(0.2, 5.0)
    values = [delay() for _ in range(10)]
    assert 0.16 <= values[0] <= 0.24
    assert all(4.0 <= v <= 6.0 for v in values[6:])
    assert all(b > a * 1.3 for a, b in pairwise(values[:5]))
