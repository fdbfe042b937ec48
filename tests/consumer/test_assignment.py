"""The member's assignment as the rebalance callbacks report it, and what it hands over (pure logic)."""

from __future__ import annotations

from collections import namedtuple

import pytest
from kafka import AsyncConsumerRebalanceListener

from consumer.assignment import Assignment, labels

TP = namedtuple("TP", "topic partition")
P0, P1 = TP("t", 0), TP("t", 1)


class _Member:
    """Records what the listener tells the member, and what it owned at each call."""

    def __init__(self, fail_hand_over: bool = False) -> None:
        self.calls: list[tuple[str, set, set]] = []
        self.changes: list[int] = []
        self.fail_hand_over = fail_hand_over
        self.assignment = Assignment(lambda owned: self.changes.append(len(owned)), self.hand_over, self.lose)

    async def hand_over(self, revoked: set) -> None:
        self.calls.append(("hand over", revoked, set(self.assignment.owned)))
        if self.fail_hand_over:
            raise RuntimeError("store worker died")

    def lose(self, lost: set) -> None:
        self.calls.append(("lose", lost, set(self.assignment.owned)))


def test_kafka_python_awaits_the_listener():
    # kafka-python runs a listener on its IO thread; only an asynchronous one may wait there without stopping
    # the heartbeats (and a synchronous one could not commit at all).
    assert isinstance(_Member().assignment, AsyncConsumerRebalanceListener)


async def test_revoked_partitions_are_handed_over_while_still_owned_then_forgotten():
    member = _Member()
    await member.assignment.on_partitions_assigned({P0, P1})
    await member.assignment.on_partitions_revoked({P1})
    assert member.calls == [("hand over", {P1}, {P0, P1})]
    assert member.assignment.owned == {P0}
    assert member.changes == [2, 1]


async def test_lost_partitions_are_forgotten_without_a_hand_over():
    member = _Member()
    await member.assignment.on_partitions_assigned({P0, P1})
    await member.assignment.on_partitions_lost({P0, P1})
    assert member.calls == [("lose", {P0, P1}, {P0, P1})]
    assert member.assignment.owned == set()


async def test_empty_callbacks_change_nothing():
    member = _Member()
    await member.assignment.on_partitions_assigned({P0})
    for callback in (member.assignment.on_partitions_revoked, member.assignment.on_partitions_lost):
        await callback(set())
    await member.assignment.on_partitions_assigned(set())
    assert member.calls == [] and member.changes == [1]
    assert member.assignment.owned == {P0}


async def test_partitions_are_forgotten_even_when_the_hand_over_fails():
    member = _Member(fail_hand_over=True)
    await member.assignment.on_partitions_assigned({P0})
    with pytest.raises(RuntimeError):  # kafka-python logs it and raises it from poll() as a KafkaError
        await member.assignment.on_partitions_revoked({P0})
    assert member.assignment.owned == set()


def test_labels_are_sorted_topic_partition_names():
    assert labels({TP("b", 0), TP("a", 10), TP("a", 2)}) == ["a-10", "a-2", "b-0"]
