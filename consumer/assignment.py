"""The partitions this member owns, from the group's rebalance callbacks."""

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
    """Rebalance listener (called from inside ``poll``; it must not block) that logs and keeps the assignment."""

    def __init__(self, on_change: Callable[[set[Any]], None]) -> None:
        self._on_change = on_change
        self.owned: set[Any] = set()

    def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Forget the revoked partitions (kafka-python also calls this for partitions lost by eviction)."""
        if not revoked:
            return
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
