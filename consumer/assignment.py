"""The partitions this member owns, from the group's rebalance callbacks.

kafka-python (3.x) calls the rebalance listener on its IO thread, the one that also sends the heartbeats, while
the member's own thread waits inside ``poll()`` (or ``close()``): a listener method that blocks stops the
heartbeats, and one that calls a blocking consumer method (``commit``) raises. This listener is therefore
asynchronous: kafka-python awaits it, and what it awaits (the member's hand-over) must await only the IO
loop's own awaitables, which keep that loop running.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kafka import AsyncConsumerRebalanceListener

log = logging.getLogger(__name__)

HandOver = Callable[[set[Any]], Awaitable[None]]


def label(partition: Any) -> str:
    """The ``topic-N`` name of a partition (for logs, metrics and heartbeats)."""
    return f"{partition.topic}-{partition.partition}"


def labels(partitions: Iterable[Any]) -> list[str]:
    """``topic-N`` names of partitions, sorted."""
    return sorted(map(label, partitions))


class Assignment(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Rebalance listener that keeps the assignment and lets the member hand partitions over.

    Before giving partitions up it awaits ``hand_over(revoked)`` while they are still owned (the member
    finishes what it has in flight and commits them); partitions lost with the membership (an eviction:
    the group has already given them to others, and a commit would be refused) are only passed to
    ``on_lost``, which must not wait.
    """

    def __init__(
        self,
        on_change: Callable[[set[Any]], None],
        hand_over: HandOver,
        on_lost: Callable[[set[Any]], None],
    ) -> None:
        self._on_change = on_change
        self._hand_over = hand_over
        self._on_lost = on_lost
        self.owned: set[Any] = set()

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Hand the revoked partitions over, then forget them (also called by ``close()``)."""
        if not revoked:
            return
        log.info("partitions revoked", extra={"partitions": labels(revoked)})
        try:
            await self._hand_over(set(revoked))
        finally:
            self._forget(revoked)

    async def on_partitions_lost(self, lost: set[Any]) -> None:
        """Forget partitions lost with the group membership, handing nothing over."""
        if not lost:
            return
        log.warning("partitions lost", extra={"partitions": labels(lost)})
        self._on_lost(set(lost))
        self._forget(lost)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        """Add the assigned partitions."""
        if not assigned:
            return
        self.owned |= set(assigned)
        log.info("partitions assigned", extra={"partitions": labels(assigned)})
        self._on_change(self.owned)

    def _forget(self, partitions: set[Any]) -> None:
        self.owned -= set(partitions)
        self._on_change(self.owned)
