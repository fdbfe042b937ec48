"""Stand-ins for pure-logic unit tests of the member's parts (``consumer/``): an assignment in a known state,
and a store worker that answers from a script."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from consumer.assignment import Assignment
from consumer.worker import Stored


async def _nothing_to_hand_over(partitions: set[Any]) -> None:
    return None


def _complete(callback: Coroutine[Any, Any, None]) -> None:
    # These callbacks never wait (nothing to hand over): run them to the end here, in sync and async tests alike.
    try:
        callback.send(None)
    except StopIteration:
        return
    callback.close()
    raise AssertionError("a rebalance callback waited")


def owning(*partitions: Any) -> Assignment:
    """An assignment that owns ``partitions``, as kafka-python's callbacks leave it; partitions it gives up
    later (:func:`give_up`) are handed over with nothing to do."""
    assignment = Assignment(lambda owned: None, _nothing_to_hand_over, lambda lost: None)
    _complete(assignment.on_partitions_assigned(set(partitions)))
    return assignment


def give_up(assignment: Assignment, *partitions: Any) -> None:
    """Revoke ``partitions`` as a rebalance does."""
    _complete(assignment.on_partitions_revoked(set(partitions)))


HELD = "held"


class ScriptedWorker:
    """Answers batches in order from a script: a Stored summary, None for a batch dropped at shutdown; before
    an answer, ``("redis", ok, error)`` and ``("kafka", error)`` reports as the worker sends them. ``HELD`` is an
    answer that does not come until :meth:`release`: a wait with a timeout raises TimeoutError meanwhile."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = list(answers)
        self.submitted: list[Any] = []

    def submit(self, now_ms: int, slices: Any) -> None:
        self.submitted.append(slices)

    def release(self) -> None:
        """Let the first held answer come."""
        self.answers.remove(HELD)

    def wait(
        self, stop: Any, on_redis: Any, on_kafka: Any, reserve_s: float = 0.0, timeout_s: float | None = None
    ) -> Stored | None:
        while isinstance(self.answers[0], tuple):
            report = self.answers.pop(0)
            (on_redis if report[0] == "redis" else on_kafka)(*report[1:])
        if self.answers[0] == HELD:
            assert timeout_s is not None, "a wait without a timeout would never end"
            raise TimeoutError
        answer: Stored | None = self.answers.pop(0)
        return answer


def stored(records: int) -> Stored:
    """The summary of a stored batch of ``records`` events."""
    return Stored(records=records, stored_events=records, skipped={}, dead_lettered={}, newest_event_ms=1)
