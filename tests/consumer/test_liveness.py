"""The member's heartbeat and Redis-up flag (fakeredis for the heartbeat's writes: pure logic)."""

from __future__ import annotations

import logging
from collections import namedtuple

import fakeredis

from activeusers.errors import StoreUnavailable
from activeusers.heartbeats import Heartbeats
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from consumer.liveness import Liveness
from consumer.metrics import ConsumerMetrics
from tests.support.parts import owning

TP = namedtuple("TP", "topic partition")


class _DownHeartbeats:
    def beat(self, member, state, now_ms):
        raise StoreUnavailable("Redis write failed: connection refused")

    def forget(self, member):
        raise StoreUnavailable("Redis write failed: connection refused")


def _liveness(heartbeats, settings=None):
    assignment = owning(TP("t", 1), TP("t", 0))
    metrics = ConsumerMetrics()
    liveness = Liveness(settings or Settings(), heartbeats, assignment, metrics, "m1", clock=lambda: 1_700_000_000.0)
    return liveness, metrics


def test_the_heartbeat_says_what_the_member_holds_and_is_written_once_per_period():
    redis = fakeredis.FakeRedis()
    keys = KeySchema("t:", "UTC")
    liveness, metrics = _liveness(Heartbeats(redis, keys, Settings()), Settings(consumer_heartbeat_s=3600))
    liveness.beat_if_due(1234)
    redis.delete(keys.heartbeat("m1"))
    liveness.beat_if_due(5678)  # not due yet
    assert not redis.exists(keys.heartbeat("m1"))
    assert redis.zrange(keys.heartbeats(), 0, -1) == [b"m1"]
    assert liveness.redis_ok and metrics.redis_up._value.get() == 1
    liveness.forget()
    assert redis.zrange(keys.heartbeats(), 0, -1) == []


def test_a_failed_heartbeat_marks_redis_down_and_is_logged_once_per_change(caplog):
    liveness, metrics = _liveness(_DownHeartbeats())
    caplog.set_level(logging.INFO, logger="consumer.liveness")
    liveness.beat_if_due(-1)
    assert not liveness.redis_ok and metrics.redis_up._value.get() == 0
    liveness.set_redis(ok=False)
    liveness.set_redis(ok=True)
    liveness.forget()  # best effort: logged, not raised
    events = [r.getMessage() for r in caplog.records]
    assert events == ["redis unavailable", "heartbeat failed", "redis recovered", "could not remove heartbeat"]
