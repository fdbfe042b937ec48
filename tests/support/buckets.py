"""Inspecting :class:`activeusers.writer.Buckets` (a batch of the writer's) in tests."""

from __future__ import annotations

from activeusers.writer import Buckets


def members(buckets: Buckets) -> int:
    """How many (user, bucket) additions the buckets hold."""
    groups = (buckets.days, buckets.hours, buckets.created)
    return sum(len(users) for group in groups for users in group.values())
