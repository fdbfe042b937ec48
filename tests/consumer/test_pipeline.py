"""The batches in flight to the store worker (pure logic, with a scripted worker)."""

from __future__ import annotations

from collections import namedtuple

from consumer.commits import Reach
from consumer.metrics import ConsumerMetrics
from consumer.pipeline import IN_FLIGHT, NO_REACH, Pipeline
from consumer.shutdown import StopRequest
from tests.support.parts import HELD, ScriptedWorker, stored

Record = namedtuple("Record", "topic partition offset key value")


def _reach(offset: int) -> Reach:
    return Reach({"t-0": offset + 1}, {})


def _pipeline(worker, redis_reports=None):
    finished: list[Reach] = []
    pipeline = Pipeline(
        worker,
        StopRequest(),
        ConsumerMetrics(),
        lambda summary, reach, seconds: finished.append(reach),
        (redis_reports if redis_reports is not None else []).append,
    )
    return pipeline, finished


def _poll(offset: int):
    return {"t-0": [Record("t", 0, offset, None, b"{}")]}


def test_batches_are_reported_in_order_with_two_in_flight():
    assert IN_FLIGHT == 2
    worker = ScriptedWorker([stored(1), stored(1), stored(1)])
    pipeline, finished = _pipeline(worker)
    pipeline.submit(_poll(10), _reach(10))
    pipeline.submit(_poll(11), _reach(11))
    assert finished == [], "nothing is reported before the worker answers"
    pipeline.submit(_poll(12), _reach(12))
    assert finished == [_reach(10)]
    assert pipeline.drain()
    assert finished == [_reach(10), _reach(11), _reach(12)]
    assert [[(s.topic, s.partition, list(s.offsets)) for s in slices] for slices in worker.submitted] == [
        [("t", 0, [10])],
        [("t", 0, [11])],
        [("t", 0, [12])],
    ]


def test_after_a_dropped_batch_no_later_batch_is_reported():
    pipeline, finished = _pipeline(ScriptedWorker([None, stored(1)]))
    pipeline.submit(_poll(10), _reach(10))
    pipeline.submit(_poll(11), _reach(11))
    assert not pipeline.drain()
    assert finished == [], "committing offset 12 would skip the dropped record at offset 10"
    assert pipeline.dropped


def test_worker_reports_reach_the_metrics_and_the_redis_flag():
    reports: list[bool] = []
    worker = ScriptedWorker([("redis", False, "down"), ("redis", True, ""), ("kafka", "dlq down"), stored(2)])
    pipeline, finished = _pipeline(worker, reports)
    pipeline.submit(_poll(1), _reach(1))
    assert pipeline.drain()
    assert reports == [False, True]
    assert len(finished) == 1
    metrics = pipeline._metrics
    assert metrics.store_errors._value.get() == 1
    assert metrics.kafka_errors._value.get() == 1


def test_finishing_what_is_answered_stops_at_the_first_batch_not_answered_yet():
    worker = ScriptedWorker([stored(1), HELD, stored(1)])
    pipeline, finished = _pipeline(worker)
    pipeline.submit(_poll(10), _reach(10))
    pipeline.submit(_poll(11), _reach(11))
    assert not pipeline.finish_answered(0.0)
    assert finished == [_reach(10)]
    assert not pipeline.finish_answered(0.0), "the same batch is waited for again"
    worker.release()
    assert pipeline.finish_answered(0.0)
    assert finished == [_reach(10), _reach(11)]
    assert pipeline.finish_answered(0.0), "nothing in flight"


def test_voided_batches_are_still_reported_in_order_but_commit_nothing():
    worker = ScriptedWorker([HELD, stored(1), stored(1), stored(1)])
    pipeline, finished = _pipeline(worker)
    pipeline.submit(_poll(10), _reach(10))
    pipeline.submit(_poll(11), _reach(11))
    assert not pipeline.finish_answered(0.0)
    assert pipeline.void() == 2
    worker.release()
    pipeline.submit(_poll(12), _reach(12))  # polled after the rebalance
    assert pipeline.drain()
    assert finished == [NO_REACH, NO_REACH, _reach(12)]
    assert NO_REACH.next_offsets == {} and NO_REACH.positions == {}
