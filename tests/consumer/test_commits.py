"""What stored batches let the member commit (pure logic, with a recording stand-in for the Kafka client)."""

from __future__ import annotations

from collections import namedtuple

import pytest
from kafka.errors import KafkaTimeoutError

from consumer.assignment import Assignment
from consumer.commits import Commits
from consumer.metrics import ConsumerMetrics
from consumer.shutdown import StopRequest

Record = namedtuple("Record", "topic partition offset key value")
TP = namedtuple("TP", "topic partition")
P0, P1 = TP("t", 0), TP("t", 1)


class _Client:
    """The calls Commits makes on a KafkaConsumer, recorded; positions are set by the test."""

    def __init__(self) -> None:
        self.positions: dict[TP, int] = {}
        self.commits: list[dict[TP, int]] = []
        self.sync_commits: list[dict[TP, int]] = []
        self.callbacks: list = []

    def position(self, tp, timeout_ms):
        return self.positions.get(tp)

    def commit_async(self, offsets, callback):
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})
        self.callbacks.append(callback)

    def commit(self, offsets, timeout_ms):
        self.sync_commits.append({tp: meta.offset for tp, meta in offsets.items()})


def _records(partition: int, *offsets: int) -> list[Record]:
    return [Record("t", partition, offset, None, b"{}") for offset in offsets]


def _commits(*owned: TP) -> tuple[Commits, _Client, Assignment, ConsumerMetrics]:
    client, metrics = _Client(), ConsumerMetrics()
    assignment = Assignment(lambda parts: None)
    assignment.on_partitions_assigned(set(owned))
    return Commits(client, assignment, metrics, StopRequest()), client, assignment, metrics


def test_a_stored_batch_commits_past_the_last_record_of_every_partition():
    commits, client, _, _ = _commits(P0, P1)
    reach = commits.reach({P0: _records(0, 5, 6), P1: _records(1, 9), TP("t", 2): []}, with_positions=False)
    assert commits.stored(reach) == {P0: 7, P1: 10}
    assert client.commits == [{P0: 7, P1: 10}]


def test_offsets_past_transaction_markers_are_committed_once_stored_and_when_idle():
    commits, client, _, _ = _commits(P0, P1)
    # After the poll the client's positions are past its last record (offset 10) and a commit marker (11), and
    # past a partition's aborted records that it returned nothing of.
    client.positions = {P0: 12, P1: 30}
    reach = commits.reach({P0: _records(0, 10)}, with_positions=True)
    assert commits.stored(reach) == {P0: 12, P1: 30}
    client.positions = {P0: 14, P1: 30}  # an idle poll moved past another marker
    commits.stored(commits.reach({}, with_positions=True))
    commits.stored(commits.reach({}, with_positions=True))
    assert client.commits == [{P0: 12, P1: 30}, {P0: 14}]


def test_a_full_poll_does_not_ask_for_positions():
    commits, client, _, _ = _commits(P0)
    client.positions = {P0: 99}
    assert commits.reach({P0: _records(0, 1)}, with_positions=False).positions == {}


def test_a_failed_commit_is_made_again_with_the_latest_owned_offsets():
    commits, client, assignment, metrics = _commits(P0, P1)
    commits.stored(commits.reach({P0: _records(0, 3), P1: _records(1, 4)}, with_positions=False))
    client.callbacks[0](None, KafkaTimeoutError("coordinator gone"))
    assignment.on_partitions_revoked({P1})
    commits.retry_failed()
    commits.retry_failed()  # once per failure, not on every loop
    assert client.commits == [{P0: 4, P1: 5}, {P0: 4}]
    assert metrics.kafka_errors._value.get() == 1


def test_the_final_commit_waits_and_covers_only_partitions_still_owned():
    commits, client, assignment, _ = _commits(P0, P1)
    commits.stored(commits.reach({P0: _records(0, 3), P1: _records(1, 4)}, with_positions=False))
    assignment.on_partitions_revoked({P0})
    commits.commit_final()
    assert client.sync_commits == [{P1: 5}]


@pytest.mark.parametrize("owned", [(), (P0,)])
def test_nothing_to_commit_sends_nothing(owned):
    commits, client, _, _ = _commits(*owned)
    commits.stored(commits.reach({}, with_positions=True))
    commits.commit_final()
    assert client.commits == [] and client.sync_commits == []
