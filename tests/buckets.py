"""Building :class:`activeusers.store.Buckets` by hand in tests, the way the classifier fills them."""

from __future__ import annotations

from datetime import date

from activeusers.store import Buckets


def add_active(buckets: Buckets, day: date, hour: int, user_id: str, ts_ms: int) -> None:
    """Record ``user_id`` as active in the day and hour bucket."""
    buckets.days[day].add(user_id)
    buckets.hours[(day, hour)].add(user_id)
    buckets.newest_event_ms = max(buckets.newest_event_ms, ts_ms)


def add_created(buckets: Buckets, day: date, user_id: str, ts_ms: int) -> None:
    """Record that ``user_id`` was created on ``day``."""
    buckets.created[day].add(user_id)
    buckets.newest_event_ms = max(buckets.newest_event_ms, ts_ms)


def members(buckets: Buckets) -> int:
    """How many (user, bucket) additions the buckets hold."""
    groups = (buckets.days, buckets.hours, buckets.created)
    return sum(len(users) for group in groups for users in group.values())
