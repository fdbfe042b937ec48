"""One poll path for the live consumer and the replay: a failed poll is counted, logged and waited out with
capped exponential back-off, never fatal; the delays start again from the shortest after a success."""

from __future__ import annotations

import io
import threading
import time
from collections import namedtuple
from zoneinfo import ZoneInfo

import fakeredis
import orjson
import pytest
import redis
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.writer import ActivityWriter
from consumer.metrics import ConsumerMetrics
from consumer.polling import POLL_TIMEOUT_MS, Poller
from consumer.replay import replay
from tests.support.indexstate import bucket_state
from tests.support.oracle import index_label, oracle

Record = namedtuple("Record", "topic partition offset key value")


class RecordingStop(threading.Event):
    """A stop event that records every back-off wait instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


class Scripted:
    """A consumer whose polls follow a script: an exception to raise or the records to return."""

    def __init__(self, script):
        self.script = list(script)
        self.timeouts: list[int] = []

    def poll(self, timeout_ms):
        self.timeouts.append(timeout_ms)
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, Exception):
            raise step
        return step


def counting_delays():
    """Delays 1, 2, 3, ... from each fresh sequence, so a reset is visible."""
    state = {"n": 0}

    def delay() -> float:
        state["n"] += 1
        return float(state["n"])

    return delay


def test_failures_back_off_and_a_success_resets_the_delays(caplog):
    error = KafkaConnectionError("111 ECONNREFUSED")
    records = {"t-0": [Record("t", 0, 0, None, b"{}")]}
    consumer = Scripted([error, error, error, records, error, {}])
    metrics, stop = ConsumerMetrics(), RecordingStop()
    poller = Poller(consumer, metrics, stop, delays=counting_delays)
    answers = [poller.poll() for _ in range(6)]
    assert answers == [{}, {}, {}, records, {}, {}]
    assert stop.waits == [1.0, 2.0, 3.0, 1.0]  # growing while failing, from the start again after a success
    assert consumer.timeouts == [POLL_TIMEOUT_MS] * 6
    assert metrics.kafka_errors._value.get() == 4
    warnings = [r for r in caplog.records if r.getMessage() == "poll failed; retrying"]
    assert len(warnings) == 4
    assert warnings[0].error == "KafkaConnectionError: KafkaConnectionError: 111 ECONNREFUSED"


def test_the_default_delays_are_the_capped_exponential_backoff():
    consumer = Scripted([KafkaTimeoutError()] * 8)
    stop = RecordingStop()
    poller = Poller(consumer, ConsumerMetrics(), stop)
    for _ in range(8):
        assert poller.poll() == {}
    nominal = [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert all(0.8 * n <= w <= 1.2 * n for w, n in zip(stop.waits, nominal, strict=True)), stop.waits


def test_only_kafka_errors_are_retried():
    poller = Poller(Scripted([ValueError("a bug")]), ConsumerMetrics(), RecordingStop())
    with pytest.raises(ValueError, match="a bug"):
        poller.poll()


def test_a_success_is_the_time_health_reads():
    poller = Poller(Scripted([KafkaConnectionError("down"), {}]), ConsumerMetrics(), RecordingStop())
    before = poller.last_success
    poller.poll()
    assert poller.last_success == before
    poller.poll()
    assert poller.last_success > before


class ReplayTopic(Scripted):
    """The calls ``replay`` makes of a group-less consumer, over one partition of ``values``, with polls that
    fail as scripted (``None`` in the script: deliver the next records)."""

    def __init__(self, topic, values, script):
        super().__init__(script)
        self.tp = TopicPartition(topic, 0)
        self.values = values
        self.next = 0

    def partitions_for_topic(self, topic):
        return {0}

    def assign(self, tps):
        assert tps == [self.tp]

    def seek_to_beginning(self, *tps):
        self.next = 0

    def beginning_offsets(self, tps):
        return {self.tp: 0}

    def end_offsets(self, tps):
        return {self.tp: len(self.values)}

    def position(self, tp):
        return self.next

    def poll(self, timeout_ms):
        step = super().poll(timeout_ms)
        if step is not None:
            return step
        upto = min(self.next + 2, len(self.values))
        chunk = [Record(self.tp.topic, 0, n, None, self.values[n]) for n in range(self.next, upto)]
        self.next += len(chunk)
        return {self.tp: chunk}


def test_replay_waits_out_a_restarting_broker_and_completes(redis_url, redis_prefix):
    now_ms = int(time.time() * 1000)  # the writer keeps what is inside retention by the wall clock
    events = [{"type": "login", "userId": f"u{n}", "ts": now_ms - n * 3_600_000} for n in range(5)]
    values = [orjson.dumps(e) for e in events]
    down = KafkaConnectionError("111 ECONNREFUSED")
    consumer = ReplayTopic("t", values, [down, down, None, down, None, None])
    consumer.script += [None] * 5  # whatever else it asks for
    client = redis.Redis.from_url(redis_url)  # the writer's index scripts need the real Redis
    keys = KeySchema(redis_prefix, "UTC")
    settings = Settings(kafka_topic="t", kafka_dlq_topic="t.dlq", redis_key_prefix=redis_prefix)
    writer = ActivityWriter(client, keys, settings)
    metrics, stop = ConsumerMetrics(), RecordingStop()
    result = replay(settings, consumer, writer, None, metrics, stop, out=io.StringIO(), clock=lambda: now_ms / 1000)
    assert result.completed and result.records == 5 and result.stored == 5
    assert metrics.kafka_errors._value.get() == 3
    assert len(stop.waits) == 3
    assert 0.16 <= stop.waits[0] <= 0.24 and 0.32 <= stop.waits[1] <= 0.48  # backing off
    assert 0.16 <= stop.waits[2] <= 0.24  # from the start again after the successful poll between
    expected = oracle(events, keys, ZoneInfo("UTC"), now_ms, settings.retention_days)
    days = [users for label, users in expected.items() if label.startswith(index_label("day", ""))]
    assert set().union(*days) == {f"u{n}" for n in range(5)}
    assert bucket_state(client, keys) == expected  # and the names lists list every numbered user
    client.close()


def test_replay_stops_while_waiting_for_the_broker():
    consumer = ReplayTopic("t", [b"{}"], [KafkaConnectionError("down")] * 100)
    settings = Settings(kafka_topic="t", kafka_dlq_topic="t.dlq")
    writer = ActivityWriter(fakeredis.FakeRedis(), KeySchema("r:", "UTC"), settings)

    class StopAfterFirstWait(RecordingStop):  # a SIGTERM while waiting for the broker
        def wait(self, timeout=None):
            super().wait(timeout)
            self.set()
            return True

    stop = StopAfterFirstWait()
    result = replay(settings, consumer, writer, None, ConsumerMetrics(), stop, out=io.StringIO())
    assert not result.completed
    assert result.records == 0
    assert len(stop.waits) == 1
