"""The member's assignment as the rebalance callbacks report it (pure logic)."""

from __future__ import annotations

from collections import namedtuple

from consumer.assignment import Assignment, labels

TP = namedtuple("TP", "topic partition")
P0, P1 = TP("t", 0), TP("t", 1)


def test_callbacks_keep_the_owned_partitions_and_report_each_change():
    changes: list[int] = []
    assignment = Assignment(lambda owned: changes.append(len(owned)))
    assignment.on_partitions_assigned({P0, P1})
    assignment.on_partitions_revoked({P1})
    assignment.on_partitions_revoked(set())
    assignment.on_partitions_assigned(set())
    assert assignment.owned == {P0}
    assert changes == [2, 1]


def test_labels_are_sorted_topic_partition_names():
    assert labels({TP("b", 0), TP("a", 10), TP("a", 2)}) == ["a-10", "a-2", "b-0"]
