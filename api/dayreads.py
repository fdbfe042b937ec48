"""Reading day sets through the app's :class:`~api.daycache.DayCache`: one ``SCARD`` round trip checks every
requested day, and only the days whose set changed (or are not cached) are read with ``SMEMBERS``. Only
active-users' ``usersList`` needs members; every count comes from the index's bitmaps through
:class:`~activeusers.store.ActivityReader` directly, with no members and no cache.

See :mod:`api.daycache` for why an unchanged cardinality means unchanged members.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import date
from typing import Final, TypeVar

import orjson

from activeusers.store import ActivityReader
from api.daycache import DayCache

# Days read per round of Redis pipelines when many days miss the cache: each round yields to the event loop, and
# Redis serves other clients between rounds, so a long cold range never monopolises either.
FETCH_DAYS: Final = 16

V = TypeVar("V")


def encode_day(day: date, users: Collection[str], count: int | None = None) -> bytes:
    """The active-users element of one day, exactly as the whole answer's encoder writes it: ``users`` listed
    (sorted), and counted as ``count`` when given (a day past the sets' retention lists no one but still has
    the index's count), else as ``len(users)``."""
    # Sorted ids: the contract leaves the order open, and a stable order makes answers comparable.
    return orjson.dumps(
        {
            "usersList": sorted(users),
            "users": len(users) if count is None else count,
            "day": day.day,
            "month": day.month,
            "year": day.year,
        }
    )


async def day_fragments(reader: ActivityReader, cache: DayCache, days: Sequence[date]) -> dict[date, bytes]:
    """The encoded elements of the days of ``days`` whose set has users."""
    return await _read_days(reader, days, cache.fragment, encode_day, cache.put_fragment)


async def _read_days(
    reader: ActivityReader,
    days: Sequence[date],
    cached: Callable[[date, int], V | None],
    derive: Callable[[date, set[str]], V],
    keep: Callable[[date, int, V], None],
) -> dict[date, V]:
    """What ``derive`` makes of each day set that has members: from the cache when the day's cardinality still
    matches its entry, else from the members read (in rounds of FETCH_DAYS days) and then kept."""
    sizes = await reader.cardinalities(days)
    found: dict[date, V] = {}
    missing: list[date] = []
    for day in days:
        size = sizes[day]
        if size:
            hit = cached(day, size)
            if hit is None:
                missing.append(day)
            else:
                found[day] = hit
    for start in range(0, len(missing), FETCH_DAYS):
        for day, users in (await reader.active_users(missing[start : start + FETCH_DAYS])).items():
            # A set may have grown since its SCARD (or expired: then it is left out); the members read are the
            # newer truth, and the entry records their own count.
            if users:
                found[day] = value = derive(day, users)
                keep(day, len(users), value)
    return found
