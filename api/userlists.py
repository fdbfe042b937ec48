"""Active-users' ``usersList``: the ids of each day's active users, read from the index's day bitmaps through the
names lists (:meth:`~activeusers.reader.ActivityReader.active_ids`), encoded once per day and kept in the app's
:class:`~api.daycache.DayCache` under the day's index version.

The ids are the bits' own, so a day's ``users`` is always ``len(usersList)`` and always the index's count, for
every day inside ``RETENTION_DAYS``. See :mod:`api.daycache` for why an unchanged version means unchanged bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Final

import orjson

from activeusers.reader import ActivityReader
from api.daycache import DayCache

# Days read per round trip when many days miss the cache: each round yields to the event loop, and Redis serves
# other clients between rounds, so a long cold range never monopolises either.
FETCH_DAYS: Final = 16


def encode_day(day: date, users: list[str]) -> bytes:
    """The active-users element of one day, exactly as the whole answer's encoder writes it: ``users`` listed
    sorted (the contract leaves the order open; sorted ids make answers stable and comparable) and counted."""
    users.sort()
    return orjson.dumps({"usersList": users, "users": len(users), "day": day.day, "month": day.month, "year": day.year})


async def day_fragments(
    reader: ActivityReader, cache: DayCache, days: Sequence[date], versions: dict[date, str | None] | None = None
) -> dict[date, bytes]:
    """The encoded elements of the days of ``days`` that had active users: from the cache where the day's index
    version still matches its entry, else from the day's bitmaps (in rounds of FETCH_DAYS days), then kept.
    ``versions``: the days' index versions if read already."""
    versions = versions or await reader.day_versions(days)
    found: dict[date, bytes] = {}
    missing: list[date] = []
    for day in days:
        hit = cache.fragment(day, versions[day])
        if hit is None:
            missing.append(day)
        elif hit:
            found[day] = hit
    for start in range(0, len(missing), FETCH_DAYS):
        chunk = missing[start : start + FETCH_DAYS]
        for day, users in zip(chunk, await reader.active_ids(chunk), strict=True):
            # Kept empty too: a day whose version holds has no bits to read again.
            fragment = encode_day(day, users) if users else b""
            cache.put_fragment(day, versions[day], fragment)
            if fragment:
                found[day] = fragment
    return found
