"""Reading the index through one process' :class:`~api.daycache.DayCache` (:class:`IndexReads`): the days' index
versions are read first (one ``HMGET``), then only the days whose version changed (or that are not cached) are read
from Redis.

What is kept: each day's counters summed over the user buckets, each day's bitmaps joined into one mask
(:mod:`api.masks`), and the counts of unions made in Redis (a range's distinct users, hourly-data's slots).
See :mod:`api.daycache` for why an unchanged version means unchanged data.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import date
from typing import Final, TypeVar

from activeusers.coalescer import Pending
from activeusers.errors import StoreUnavailable
from activeusers.keys import DAY_SLOT, NEW_SLOT, SLOTS, MaskKind
from activeusers.reader import ActivityReader
from api.daycache import DayCache
from api.masks import Layout, joined, layout_for

# The layout every cached mask was joined in is kept in the cache itself, under its own name as key and version.
LAYOUT: Final = ("mask layout",)
# Estimated bytes of one day's cached counters (a tuple of 26 small ints), of a few union counts and their key.
COUNTERS_SIZE: Final = 1_000
UNIONS_SIZE: Final = 4_000
# Days a union must keep in Redis to be kept at all (below, ORing the days themselves costs as much), and the bytes
# of the digest of their versions.
KEPT_UNION_DAYS: Final = 2
DIGEST_BYTES: Final = 12

# The kind of the counters kept in Redis for every API process (KeySchema.derived_field).
COUNTERS: Final = "counters"
COUNTERS_FORMAT: Final = f">{SLOTS}I"
LOG = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)
# The index versions of days, as ActivityReader.day_versions reads them.
Versions = dict[date, str | None]


def digest(values: Hashable) -> str:
    """A short digest of ``values`` (index versions, and what else a derived value depends on): what a derived
    value kept for other processes is checked against."""
    return hashlib.blake2b(repr(values).encode(), digest_size=DIGEST_BYTES).hexdigest()


class IndexReads:
    """The index's counts, masks and unions of days and hours, each kept in ``cache`` under the index versions
    of the days it was read from, and counters shared with the other API processes through Redis."""

    def __init__(self, reader: ActivityReader, cache: DayCache) -> None:
        self.reader = reader
        self.cache = cache

    async def day_versions(self, days: Sequence[date]) -> Versions:
        """The index versions of ``days``, read now."""
        return await self.reader.day_versions(days)

    def day_versions_soon(self, days: Sequence[date]) -> Pending[Versions]:
        """The index versions of ``days``, queued with this turn's other small reads (one round trip)."""
        return self.reader.day_versions_soon(days)

    async def day_counts(self, days: Sequence[date], versions: Versions) -> dict[date, int]:
        """Distinct users active on each day (0 for a day without data)."""
        counters = await self.day_counters(days, versions)
        return {day: found[DAY_SLOT] for day, found in zip(days, counters, strict=True)}

    async def new_user_counts(self, days: Sequence[date], versions: Versions) -> dict[date, int]:
        """How many users were created on each day (0 for a day without data)."""
        counters = await self.day_counters(days, versions)
        return {day: found[NEW_SLOT] for day, found in zip(days, counters, strict=True)}

    async def hour_counts(self, hours: Sequence[tuple[date, int]], versions: Versions) -> dict[tuple[date, int], int]:
        """Distinct users of each local hour ``(day, hour)`` (0 without data); ``versions``: those of at
        least their days."""
        days = sorted({day for day, _ in hours})
        counters = dict(zip(days, await self.day_counters(days, versions), strict=True))
        return {(day, hour): counters[day][hour] for day, hour in hours}

    async def day_counters(self, days: Sequence[date], versions: Versions) -> list[tuple[int, ...]]:
        """Each day's counters summed over the user buckets (:meth:`ActivityReader.day_counters`), in the order of
        ``days``; ``versions`` says which ones kept by this process or by any (in Redis) still hold."""
        found: dict[date, tuple[int, ...]] = {}
        for day in days:
            if (hit := self.cache.get(("counters", day), versions[day])) is not None:
                found[day] = hit
        if len(found) < len(days):
            for day, text in (await self.reader.derived(COUNTERS, [d for d in days if d not in found])).items():
                if (counters := _decoded_counters(text, versions[day])) is not None:
                    found[day] = counters
                    self.cache.put(("counters", day), versions[day], counters, COUNTERS_SIZE)
        missing = [day for day in days if day not in found]
        if missing:
            shared: dict[date, str] = {}
            for day, counters in zip(missing, await self.reader.day_counters(missing), strict=True):
                found[day] = counters
                self.cache.put(("counters", day), versions[day], counters, COUNTERS_SIZE)
                if (version := versions[day]) is not None:
                    shared[day] = f"{version} {struct.pack(COUNTERS_FORMAT, *counters).hex()}"
            await self.share(COUNTERS, shared)
        return [found[day] for day in days]

    async def share(self, kind: str, values: dict[date, str]) -> None:
        """Keep ``values`` of ``kind`` in Redis for the other API processes; an answer is complete without (a
        read-only replica, an ACL without ``HSET``), so a refusal is logged, not raised."""
        try:
            await self.reader.keep_derived(kind, values)
        except StoreUnavailable as exc:
            LOG.warning("derived values not shared", extra={"kind": kind, "error": str(exc)})

    async def segment_counters(self, name: str, days: Sequence[date], versions: Versions) -> list[tuple[int, ...]]:
        """Each day's users per value id of property ``name`` (:meth:`ActivityReader.segment_counters`), kept per
        day under its version."""
        found = {
            day: hit for day in days if (hit := self.cache.get(("segcounts", name, day), versions[day])) is not None
        }
        missing = [day for day in days if day not in found]
        if missing:
            for day, counters in zip(missing, await self.reader.segment_counters(name, missing), strict=True):
                found[day] = counters
                self.cache.put(("segcounts", name, day), versions[day], counters, COUNTERS_SIZE + 4 * len(counters))
        return [found[day] for day in days]

    async def segment_union_counts(
        self, name: str, ids: Sequence[int], days: Sequence[date], versions: Versions
    ) -> list[int]:
        """The distinct users of each value id of property ``name`` over ``days`` (unioned in Redis), kept while
        the days keep their versions."""
        key = ("segment unions", name, tuple(ids), tuple(days))
        version = tuple(versions[day] for day in days)
        found: list[int] | None = self.cache.get(key, version)
        if found is None:
            found = await self.reader.segment_union_counts(name, ids, days, _kept(days, versions))
            self.cache.put(key, version, found, UNIONS_SIZE)
        return found

    async def day_masks(self, days: Sequence[date], versions: Versions, kind: MaskKind = "day") -> list[int]:
        """Each day's active users (or its users of another ``kind``: created, first active, in a segment) as one
        mask (0 for a
        day without data), in the order of ``days``, all in one layout. The cached masks of the current layout are
        taken, the others fetched and joined; when a bucket outgrew its span every mask is joined again, in the new
        layout: masks of two layouts cannot be combined."""
        cache = self.cache
        layout: Layout | None = cache.get(LAYOUT, LAYOUT)
        found: list[int | None] = [None] * len(days)
        if layout is not None:
            found = [cache.get((kind, day), (versions[day], layout)) for day in days]
        missing = [i for i, mask in enumerate(found) if mask is None]
        if missing:
            bitmaps = await self.reader.day_bitmaps([days[i] for i in missing], kind)
            wider = layout_for(bitmaps, layout)
            if wider != layout and len(missing) < len(days):
                missing = list(range(len(days)))
                bitmaps = await self.reader.day_bitmaps(days, kind)
                wider = layout_for(bitmaps, wider)
            for i, mask in zip(missing, joined(bitmaps, wider), strict=True):
                found[i] = mask
                cache.put((kind, days[i]), (versions[days[i]], wider), mask, wider.size)
            cache.put(LAYOUT, LAYOUT, wider, 64 * len(wider.spans))
        return [mask for mask in found if mask is not None]

    async def day_union_counts(
        self, groups: Sequence[Sequence[date]], versions: Versions, kind: MaskKind = "day"
    ) -> list[int]:
        """The distinct users (of ``kind``) of each group of days (unioned in Redis), kept while the days keep
        their versions.

        A group of consecutive days is read as the union of all but its newest day, which Redis keeps (while those
        days keep their versions, for every API process), ORed with the newest day: the days of a range ending
        today change only today (a late event to a past day makes that union again), so a new process ORs two
        bitmaps per bucket where it would OR the whole range."""
        key, version = _day_unions(groups, versions, kind)

        async def count(groups: Sequence[Sequence[date]]) -> list[int]:
            return await self.reader.day_union_counts(groups, [_kept(group, versions) for group in groups], kind)

        return await self._union_counts(key, version, count, groups)

    def keep_union_count(
        self, groups: Sequence[Sequence[date]], versions: Versions, counts: list[int], kind: MaskKind = "day"
    ) -> None:
        """Keep the counts of :meth:`day_union_counts` computed otherwise (from masks at hand)."""
        key, version = _day_unions(groups, versions, kind)
        self.cache.put(key, version, counts, UNIONS_SIZE)

    async def hour_union_counts(self, groups: Sequence[Sequence[tuple[date, int]]], versions: Versions) -> list[int]:
        """The distinct users of each group of local hours (unioned in Redis), kept while their days keep
        their versions (``versions``: those of at least their days)."""
        version = tuple(versions[day] for group in groups for day, _ in group)
        key = ("hour unions", _frozen(groups))
        return await self._union_counts(key, version, self.reader.hour_union_counts, groups)

    async def _union_counts(
        self,
        key: Hashable,
        version: Hashable,
        count: Callable[[Sequence[Sequence[T]]], Awaitable[list[int]]],
        groups: Sequence[Sequence[T]],
    ) -> list[int]:
        found: list[int] | None = self.cache.get(key, version)
        if found is None:
            found = await count(groups)
            self.cache.put(key, version, found, UNIONS_SIZE)
        return found


def _decoded_counters(text: str | None, version: str | None) -> tuple[int, ...] | None:
    """Counters kept as "version" and their 26 big-endian 32-bit numbers in hex, if summed under ``version`` (hex:
    one conversion per day where 26 decimal numbers cost 26)."""
    if text is None or version is None:
        return None
    found, _, packed = text.partition(" ")
    if found != version or len(packed) != 8 * SLOTS:
        return None  # of another version, or not ours
    try:
        return struct.unpack(COUNTERS_FORMAT, bytes.fromhex(packed))
    except (ValueError, struct.error):
        return None  # not ours


def _kept(group: Sequence[date], versions: Versions) -> tuple[int, str] | None:
    """How :meth:`ActivityReader.day_union_counts` keeps all but the newest day of ``group``: none when they are
    fewer than two or not consecutive; else their number and the digest of their versions."""
    size = len(group) - 1
    if size < KEPT_UNION_DAYS or (group[size - 1] - group[0]).days != size - 1:
        return None
    return size, digest(tuple(versions[day] for day in group[:size]))


def _day_unions(groups: Sequence[Sequence[date]], versions: Versions, kind: MaskKind) -> tuple[Hashable, Hashable]:
    return ("day unions", kind, _frozen(groups)), tuple(versions[day] for group in groups for day in group)


def _frozen(groups: Sequence[Sequence[T]]) -> tuple[tuple[T, ...], ...]:
    return tuple(tuple(group) for group in groups)
