"""Inspecting :class:`activeusers.store.Buckets` in tests."""

from __future__ import annotations

from activeusers.store import Buckets


def members(buckets: Buckets) -> int:
    """How many (user, bucket) additions the buckets hold."""
    groups = (buckets.days, buckets.hours, buckets.created)
    return sum(len(users) for group in groups for users in group.values())
