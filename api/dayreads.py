"""Reading day sets through the app's :class:`~api.daycache.DayCache`: one ``SCARD`` round trip checks every
requested day, and only the days whose set changed (or are not cached) are read with ``SMEMBERS``.

See :mod:`api.daycache` for why an unchanged cardinality means unchanged members.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Final

import orjson

from activeusers.store import ActivityReader
from api.daycache import DayCache

# Days read per round of Redis pipelines when many days miss the cache: each round yields to the event loop, and
# Redis serves other clients between rounds, so a long cold range never monopolises either.
FETCH_DAYS: Final = 16


def encode_day(day: date, users: set[str]) -> bytes:
    """The active-users element of one day, exactly as the whole answer's encoder writes it."""
    # Sorted ids: the contract leaves the order open, and a stable order makes answers comparable.
    return orjson.dumps(
        {"usersList": sorted(users), "users": len(users), "day": day.day, "month": day.month, "year": day.year}
    )


async def day_fragments(reader: ActivityReader, cache: DayCache, days: Sequence[date]) -> list[bytes]:
    """The encoded elements of the days that have users, newest day first (``days`` is oldest first)."""
    sizes = await reader.cardinalities(days)
    fragments: dict[date, bytes] = {}
    missing: list[date] = []
    for day in days:
        size = sizes[day]
        if size:
            hit = cache.fragment(day, size)
            if hit is None:
                missing.append(day)
            else:
                fragments[day] = hit
    for start in range(0, len(missing), FETCH_DAYS):
        found = await reader.active_users(missing[start : start + FETCH_DAYS])
        for day, users in found.items():
            # A set may have grown since its SCARD (or expired: then it is left out); the members read are the
            # newer truth, and the entry records their own count.
            if users:
                fragments[day] = fragment = encode_day(day, users)
                cache.put_fragment(day, len(users), fragment)
    return [fragments[day] for day in reversed(days) if day in fragments]


async def day_masks(reader: ActivityReader, cache: DayCache, days: Sequence[date]) -> list[int]:
    """Each day's users as a bitmask (0 for a day without data), in the order of ``days``, all of one universe."""
    sizes = await reader.cardinalities(days)
    universe = cache.universe()
    masks: dict[date, int] = {}
    missing: list[date] = []
    for day in days:
        size = sizes[day]
        if not size:
            masks[day] = 0
        elif (hit := cache.mask(day, size, universe)) is not None:
            masks[day] = hit
        else:
            missing.append(day)
    for start in range(0, len(missing), FETCH_DAYS):
        found = await reader.active_users(missing[start : start + FETCH_DAYS])
        for day, users in found.items():
            masks[day] = bits = universe.mask(users)
            if users:
                cache.put_mask(day, len(users), universe, bits)
    return [masks[day] for day in days]
