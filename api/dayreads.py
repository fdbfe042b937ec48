"""Reading day sets through the app's :class:`~api.daycache.DayCache`: one ``SCARD`` round trip checks every
requested day, and only the days whose set changed (or are not cached) are read with ``SMEMBERS``. One read path
serves both derived forms (active-users' encoded elements and the summary's bitmasks); the endpoints that only
count (new users, hours, chat-busier) read cardinalities through :class:`~activeusers.store.ActivityReader`
directly and need no members and no cache.

See :mod:`api.daycache` for why an unchanged cardinality means unchanged members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Final, TypeVar

import orjson

from activeusers.store import ActivityReader
from api.daycache import DayCache

# Days read per round of Redis pipelines when many days miss the cache: each round yields to the event loop, and
# Redis serves other clients between rounds, so a long cold range never monopolises either.
FETCH_DAYS: Final = 16

V = TypeVar("V")


def encode_day(day: date, users: set[str]) -> bytes:
    """The active-users element of one day, exactly as the whole answer's encoder writes it."""
    # Sorted ids: the contract leaves the order open, and a stable order makes answers comparable.
    return orjson.dumps(
        {"usersList": sorted(users), "users": len(users), "day": day.day, "month": day.month, "year": day.year}
    )


async def day_fragments(reader: ActivityReader, cache: DayCache, days: Sequence[date]) -> list[bytes]:
    """The encoded elements of the days that have users, newest day first (``days`` is oldest first)."""
    found = await _read_days(reader, days, cache.fragment, encode_day, cache.put_fragment)
    return [found[day] for day in reversed(days) if day in found]


async def day_masks(reader: ActivityReader, cache: DayCache, days: Sequence[date]) -> list[int]:
    """Each day's users as a bitmask (0 for a day without data), in the order of ``days``, all of one universe."""
    universe = cache.universe()
    found = await _read_days(
        reader,
        days,
        lambda day, size: cache.mask(day, size, universe),
        lambda _day, users: universe.mask(users),
        lambda day, size, bits: cache.put_mask(day, size, universe, bits),
    )
    return [found.get(day, 0) for day in days]


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
