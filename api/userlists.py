"""Active-users' ``usersList``: the ids of each day's active users, read from the index's day bitmaps through the
names lists (:meth:`~activeusers.reader.ActivityReader.named_bitmaps`), encoded once per day and kept in the app's
:class:`~api.daycache.DayCache` under the day's index version.

The ids are the bits' own, so a day's ``users`` is always ``len(usersList)`` and always the index's count, for
every day inside ``RETENTION_DAYS``. See :mod:`api.daycache` for why an unchanged version means unchanged bits.

Today changes with every batch the consumer stores, so today's element is made again for nearly every request.
Its sorted ids are kept with the bitmaps they came from, and a new version only names the bits set since (a bitmap
only gains bits while its key lives) and inserts them: sorting a day's ids is most of the cost of making it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

import orjson

from activeusers.reader import ActivityReader
from api.daycache import DayCache

# Days read per round trip when many days miss the cache: each round yields to the event loop, and Redis serves
# other clients between rounds, so a long cold range never monopolises either.
FETCH_DAYS: Final = 16
# The version under which a growing day's listing is kept: any (the listing records what it was made from).
_LISTED: Final = ("listed",)
# Estimated bytes of a kept listing per id (a list slot; the strings are the reader's own).
_ID_SLOT_BYTES: Final = 8


@dataclass(frozen=True, slots=True)
class _Listing:
    """A growing day's ids, sorted, and the bitmaps of each bucket they were named from, under a names epoch."""

    epoch: int
    bitmaps: tuple[bytes, ...]
    ids: list[str]


def encode_day(day: date, users: list[str]) -> bytes:
    """The active-users element of one day, exactly as the whole answer's encoder writes it: ``users`` (sorted:
    the contract leaves the order open; sorted ids make answers stable and comparable) listed and counted."""
    return orjson.dumps({"usersList": users, "users": len(users), "day": day.day, "month": day.month, "year": day.year})


class UserLists:
    """Active-users' day elements, each kept in ``cache`` under its day's index version (today's listing too)."""

    def __init__(self, reader: ActivityReader, cache: DayCache) -> None:
        self.reader = reader
        self.cache = cache

    async def day_fragments(
        self, days: Sequence[date], versions: dict[date, str | None], growing: date | None = None
    ) -> dict[date, bytes]:
        """The encoded elements of the days of ``days`` that had active users: from the cache where the day's
        index version still matches its entry, else from the day's bitmaps (in rounds of FETCH_DAYS days), then
        kept. Days from ``growing`` on (today) keep their listing too, so their next version only names new bits."""
        reader, cache = self.reader, self.cache
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
            bitmaps = await reader.named_bitmaps(chunk)
            for position, day in enumerate(chunk):
                day_bitmaps = tuple(found_in_bucket[position] for found_in_bucket in bitmaps)
                if growing is not None and day >= growing:
                    users = _grown(reader, cache, day, day_bitmaps)
                else:
                    users = sorted(reader.day_ids(day_bitmaps))
                # Kept empty too: a day whose version holds has no bits to read again.
                fragment = encode_day(day, users) if users else b""
                cache.put_fragment(day, versions[day], fragment)
                if fragment:
                    found[day] = fragment
        return found


def _grown(reader: ActivityReader, cache: DayCache, day: date, bitmaps: tuple[bytes, ...]) -> list[str]:
    """The sorted ids of a growing day's ``bitmaps``: its kept listing with the bits set since inserted, or all
    of them when there is none (or its bitmaps lost bits: a key expired or Redis lost data, or the names were read
    again), kept for the next version."""
    kept: _Listing | None = cache.get(("listing", day), _LISTED)
    added: list[str] | None = None
    if kept is not None and kept.epoch == reader.names_epoch and len(kept.bitmaps) == len(bitmaps):
        added = []
        for bucket, (old, new) in enumerate(zip(kept.bitmaps, bitmaps, strict=True)):
            if old == new:
                continue
            size = max(len(old), len(new))
            before, after = int.from_bytes(old.ljust(size, b"\0"), "big"), int.from_bytes(new.ljust(size, b"\0"), "big")
            if before & ~after:
                added = None
                break
            added += reader.ids_of(bucket, (after & ~before).to_bytes(size, "big"))
    if kept is not None and added is not None:
        users = kept.ids
        for user in added:
            bisect.insort(users, user)
    else:
        users = sorted(reader.day_ids(bitmaps))
    listing = _Listing(reader.names_epoch, bitmaps, users)
    cache.put(("listing", day), _LISTED, listing, _ID_SLOT_BYTES * len(users) + sum(map(len, bitmaps)))
    return users
