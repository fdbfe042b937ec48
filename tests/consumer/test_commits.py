"""What stored batches let the member commit (pure logic, with a recording stand-in for the Kafka client)."""

from __future__ import annotations

import asyncio
import time
from collections import namedtuple

import pytest
from kafka.errors import KafkaTimeoutError, UnknownMemberIdError
from kafka.future import Future

from consumer.assignment import Assignment
from consumer.commits import Commits
from consumer.metrics import ConsumerMetrics
from consumer.shutdown import StopRequest
from tests.support.parts import give_up, owning

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
        self.futures: list[Future] = []

    def position(self, tp, timeout_ms):
        return self.positions.get(tp)

    def commit_async(self, offsets, callback=None):
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})
        self.callbacks.append(callback)
        self.futures.append(Future())
        return self.futures[-1]

    def commit(self, offsets, timeout_ms):
        self.sync_commits.append({tp: meta.offset for tp, meta in offsets.items()})


def _records(partition: int, *offsets: int) -> list[Record]:
    return [Record("t", partition, offset, None, b"{}") for offset in offsets]


def _commits(*owned: TP, stop: StopRequest | None = None) -> tuple[Commits, _Client, Assignment, ConsumerMetrics]:
    client, metrics = _Client(), ConsumerMetrics()
    assignment = owning(*owned)
    return Commits(client, assignment, metrics, stop or StopRequest()), client, assignment, metrics


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
    give_up(assignment, P1)
    commits.retry_failed()
    commits.retry_failed()  # once per failure, not on every loop
    assert client.commits == [{P0: 4, P1: 5}, {P0: 4}]
    assert metrics.kafka_errors._value.get() == 1


def test_the_final_commit_waits_and_covers_only_partitions_still_owned():
    commits, client, assignment, _ = _commits(P0, P1)
    commits.stored(commits.reach({P0: _records(0, 3), P1: _records(1, 4)}, with_positions=False))
    give_up(assignment, P0)
    commits.commit_final()
    assert client.sync_commits == [{P1: 5}]


@pytest.mark.parametrize("owned", [(), (P0,)])
def test_nothing_to_commit_sends_nothing(owned):
    commits, client, _, _ = _commits(*owned)
    commits.stored(commits.reach({}, with_positions=True))
    commits.commit_final()
    assert client.commits == [] and client.sync_commits == []


def test_a_batch_stored_after_a_revocation_commits_only_the_partitions_still_owned():
    commits, client, assignment, _ = _commits(P0, P1)
    client.positions = {P0: 4, P1: 9}
    reach = commits.reach({P0: _records(0, 3), P1: _records(1, 4)}, with_positions=True)
    give_up(assignment, P1)  # the batch was polled before the rebalance and stored after it
    assert commits.stored(reach) == {P0: 4}
    assert client.commits == [{P0: 4}]


class _Ticks:
    """The IO loop's ticks a hand-over awaits; the broker answers the last commit at tick ``answer_at``."""

    def __init__(self, client: _Client, answer_at: int | None, error: BaseException | None = None) -> None:
        self.client, self.answer_at, self.error, self.count = client, answer_at, error, 0

    async def __call__(self) -> None:
        self.count += 1
        if self.count == self.answer_at:
            future = self.client.futures[-1]
            future.failure(self.error) if self.error else future.success(None)
        await asyncio.sleep(0.01)


async def test_a_hand_over_commits_the_latest_offsets_of_the_revoked_partitions_and_waits_for_the_answer():
    commits, client, assignment, _ = _commits(P0, P1)
    commits.stored(commits.reach({P0: _records(0, 3), P1: _records(1, 4)}, with_positions=False))
    commits.stored(commits.reach({P1: _records(1, 7)}, with_positions=False))
    ticks = _Ticks(client, answer_at=3)
    assert await commits.hand_over({P1}, ticks) == {P1: 8}
    assert client.commits[-1] == {P1: 8}
    assert ticks.count == 3, "it waited for the broker's answer"
    give_up(assignment, P1)
    commits.commit_final()
    assert client.sync_commits == [{P0: 4}], "a partition handed over is not committed again"


async def test_a_failed_hand_over_commit_is_counted_and_not_made_again():
    commits, client, _, metrics = _commits(P0, P1)
    commits.stored(commits.reach({P0: _records(0, 3), P1: _records(1, 4)}, with_positions=False))
    ticks = _Ticks(client, answer_at=1, error=UnknownMemberIdError())
    assert await commits.hand_over({P0, P1}, ticks) == {}
    assert metrics.kafka_errors._value.get() == 1
    commits.retry_failed()
    assert len(client.commits) == 2, "the next owner re-reads from the previous commit"


async def test_a_hand_over_does_not_wait_past_the_stop_budget_for_an_answer():
    stop = StopRequest(grace_s=0.0)
    stop.set()
    commits, client, _, metrics = _commits(P0, stop=stop)
    commits.stored(commits.reach({P0: _records(0, 3)}, with_positions=False))
    started = time.monotonic()
    assert await commits.hand_over({P0}, _Ticks(client, answer_at=None)) == {}
    assert 0.5 <= time.monotonic() - started < 2, "half a second at the least, as the final commit"
    assert metrics.kafka_errors._value.get() == 1


async def test_a_hand_over_of_partitions_with_nothing_stored_sends_nothing():
    commits, client, _, _ = _commits(P0, P1)
    commits.stored(commits.reach({P0: _records(0, 3)}, with_positions=False))
    assert await commits.hand_over({P1}, _Ticks(client, answer_at=1)) == {}
    assert client.commits == [{P0: 4}]
