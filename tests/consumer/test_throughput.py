"""Counting stored batches into the metrics, the lag and the throughput line (pure logic)."""

from __future__ import annotations

import logging
from collections import namedtuple

from consumer import throughput as module
from consumer.metrics import ConsumerMetrics
from consumer.throughput import Throughput
from consumer.worker import Stored
from tests.support.parts import give_up, owning

TP = namedtuple("TP", "topic partition")
P0, P1 = TP("t", 0), TP("t", 1)


class _Client:
    def __init__(self, highwater):
        self._highwater = highwater

    def highwater(self, tp):
        return self._highwater.get(tp)


def _throughput(highwater, *owned):
    assignment = owning(*owned)
    metrics = ConsumerMetrics()
    return Throughput(_Client(highwater), assignment, metrics), assignment, metrics


def test_a_stored_batch_is_counted_with_its_skips_dead_letters_and_newest_event():
    counter, _, metrics = _throughput({P0: 10}, P0)
    stored = Stored(
        records=7, stored_events=4, skipped={"too_old": 1}, dead_lettered={"not_json": 2}, newest_event_ms=5000
    )
    counter.account(stored, {P0: 8}, 0.01)
    counter.account(
        Stored(records=1, stored_events=1, skipped={}, dead_lettered={}, newest_event_ms=4000), {P0: 9}, 0.01
    )
    assert metrics.consumed._value.get() == 8
    assert metrics.stored._value.get() == 5
    assert metrics.skipped.labels("too_old")._value.get() == 1
    assert metrics.dead_lettered.labels("not_json")._value.get() == 2
    assert metrics.last_event._value.get() == 5.0
    assert counter.newest_event_ms == 5000
    assert counter.lag == {"t-0": 1}


def test_lag_is_kept_for_owned_partitions_only():
    counter, assignment, metrics = _throughput({P0: 10, P1: 20}, P0, P1)
    counter.update_lag({P0: 10, P1: 15})
    assert counter.lag == {"t-0": 0, "t-1": 5}
    give_up(assignment, P1)
    counter.update_lag({P1: 20})
    assert counter.lag == {"t-0": 0}
    assert metrics.lag.labels("t-0")._value.get() == 0


def test_the_throughput_line_is_logged_once_per_period_and_counts_restart(monkeypatch, caplog):
    counter, _, _ = _throughput({}, P0)
    clock = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    counter._last_log = clock[0]
    counter.account(
        Stored(records=50, stored_events=40, skipped={}, dead_lettered={"empty": 3}, newest_event_ms=1), {}, 0
    )
    caplog.set_level(logging.INFO, logger="consumer.throughput")
    counter.log_if_due()
    assert not caplog.records
    clock[0] += module.THROUGHPUT_LOG_S
    counter.log_if_due()
    counter.log_if_due()
    [line] = caplog.records
    assert (line.records, line.recordsPerSecond, line.stored, line.deadLettered) == (50, 5.0, 40, 3)
    clock[0] += module.THROUGHPUT_LOG_S
    counter.log_if_due()
    assert caplog.records[-1].records == 0
