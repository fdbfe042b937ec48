"""The batches in flight to the store worker (pure logic, with a scripted worker)."""

from __future__ import annotations

from collections import namedtuple

from consumer.commits import Reach
from consumer.metrics import ConsumerMetrics
from consumer.pipeline import IN_FLIGHT, Pipeline
from consumer.shutdown import StopRequest
from consumer.worker import Stored

Record = namedtuple("Record", "topic partition offset key value")


class _ScriptedWorker:
    """Answers batches in order from a script: a Stored summary, None for a batch dropped at shutdown; before
    an answer, ``("redis", ok, error)`` and ``("kafka", error)`` reports as the worker sends them."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.submitted: list[list] = []

    def submit(self, now_ms, slices):
        self.submitted.append(slices)

    def wait(self, stop, on_redis, on_kafka, reserve_s=0.0):
        answer = self.answers.pop(0)
        while isinstance(answer, tuple):
            if answer[0] == "redis":
                on_redis(*answer[1:])
            else:
                on_kafka(*answer[1:])
            answer = self.answers.pop(0)
        return answer


def _stored(records: int) -> Stored:
    return Stored(records=records, stored_events=records, skipped={}, dead_lettered={}, newest_event_ms=1)


def _reach(offset: int) -> Reach:
    return Reach({"t-0": offset + 1}, {})


def _pipeline(worker, redis_reports=None):
    finished: list[Reach] = []
    pipeline = Pipeline(
        worker,
        StopRequest(),
        ConsumerMetrics(),
        lambda stored, reach, seconds: finished.append(reach),
        (redis_reports if redis_reports is not None else []).append,
    )
    return pipeline, finished


def _poll(offset: int):
    return {"t-0": [Record("t", 0, offset, None, b"{}")]}


def test_batches_are_reported_in_order_with_two_in_flight():
    assert IN_FLIGHT == 2
    worker = _ScriptedWorker([_stored(1), _stored(1), _stored(1)])
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
    pipeline, finished = _pipeline(_ScriptedWorker([None, _stored(1)]))
    pipeline.submit(_poll(10), _reach(10))
    pipeline.submit(_poll(11), _reach(11))
    assert not pipeline.drain()
    assert finished == [], "committing offset 12 would skip the dropped record at offset 10"
    assert pipeline.dropped


def test_worker_reports_reach_the_metrics_and_the_redis_flag():
    reports: list[bool] = []
    worker = _ScriptedWorker([("redis", False, "down"), ("redis", True, ""), ("kafka", "dlq down"), _stored(2)])
    pipeline, finished = _pipeline(worker, reports)
    pipeline.submit(_poll(1), _reach(1))
    assert pipeline.drain()
    assert reports == [False, True]
    assert len(finished) == 1
    metrics = pipeline._metrics
    assert metrics.store_errors._value.get() == 1
    assert metrics.kafka_errors._value.get() == 1
