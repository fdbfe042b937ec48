"""The partitions this member owns, from the group's rebalance callbacks, and which of them it lost when.

A batch polled before a rebalance may be stored after it. Kafka's coordinator accepts a commit from any
current member for any partition, so a late commit for a partition that another member has consumed meanwhile
would move the group's offset back below that member's (which, idle, never commits again: the lag would stand).
:meth:`Assignment.held_since` lets the commit book keeping skip such partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener

log = logging.getLogger(__name__)


def labels(partitions: Iterable[Any]) -> list[str]:
    """``topic-N`` names of partitions, sorted (for logs, metrics and heartbeats)."""
    return sorted(f"{tp.topic}-{tp.partition}" for tp in partitions)


class Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Rebalance listener (called from inside ``poll``; it must not block) that logs and keeps the assignment.

    ``epoch`` counts the revocations seen; a partition revoked at epoch ``e`` is held "since" an earlier epoch
    no longer, even once it is assigned back (another member may have consumed it in between).
    """

    def __init__(self, on_change: Callable[[set[Any]], None]) -> None:
        self._on_change = on_change
        self.owned: set[Any] = set()
        self.epoch = 0
        self._revoked_at: dict[Any, int] = {}

    def held_since(self, tp: Any, epoch: int) -> bool:
        """Whether this member has owned ``tp`` without interruption since ``epoch``."""
        return tp in self.owned and self._revoked_at.get(tp, 0) <= epoch

    def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Forget the revoked partitions (kafka-python also calls this for partitions lost by eviction)."""
        if not revoked:
            return
        self.epoch += 1
        for tp in revoked:
            self._revoked_at[tp] = self.epoch
        self.owned -= set(revoked)
        log.info("partitions revoked", extra={"partitions": labels(revoked)})
        self._on_change(self.owned)

    def on_partitions_assigned(self, assigned: set[Any]) -> None:
        """Add the assigned partitions."""
        if not assigned:
            return
        self.owned |= set(assigned)
        log.info("partitions assigned", extra={"partitions": labels(assigned)})
        self._on_change(self.owned)
