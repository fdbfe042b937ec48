"""The summary's per-day points (DAU, WAU, MAU) of a range, computed only where their data changed.

A point depends only on the days of its windows, so it is kept, with the digest of those days' index versions,
in this process' cache and in Redis for every process: a new one computes only the points of changed days
(today's while it is today, and late events' days). A few are computed in Redis from unions, many from the masks
of their windows (:func:`api.windows.summarize`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from activeusers.days import WEEK_DAYS
from activeusers.keys import MaskKind, Segment
from api.indexreads import IndexReads, Versions, digest
from api.windows import LOOKBACK_DAYS, MONTH_DAYS, DayPoint, decoded_point, encoded_point, summarize

# Estimated bytes of one cached point.
POINT_SIZE: Final = 200
# The kind of the points kept in Redis for every API process (KeySchema.derived_field).
POINT: Final = "point"
# Points computed in Redis when at most this many are missing (today's; yesterday's too just after midnight): a
# few unions per bucket there, where more points cost less from masks (three ORs each).
REDIS_POINTS: Final = 2


@dataclass(frozen=True, slots=True)
class _Work:
    """What computing a range's missing points works with: the days feeding the windows (``feed``, the range's and
    the 29 before), the range, their versions, and the points known so far."""

    feed: Sequence[date]
    days: Sequence[date]
    versions: Versions
    known: dict[date, DayPoint]
    kind: MaskKind


class DayPoints:
    """The points of ranges of days, read through ``reads`` and kept in its cache and in Redis."""

    def __init__(self, reads: IndexReads) -> None:
        self._reads = reads

    async def points(
        self, feed: Sequence[date], days: Sequence[date], versions: Versions, kind: MaskKind = "day"
    ) -> tuple[list[DayPoint], int]:
        """The points of ``days`` and their distinct users (``feed``: the days of their windows, whose index
        versions are ``versions``), of the users active (``kind`` ``day``) or active in a segment (each kind's
        points shared under a kind of their own)."""
        cache = self._reads.cache
        digests = _window_digests(feed, versions, feed.index(days[0]))
        known = await self._known_points(digests, kind)
        missing = [day for day in days if day not in known]
        work = _Work(feed, days, versions, known, kind)
        distinct = await (self._from_masks if len(missing) > REDIS_POINTS else self._in_redis)(work, missing)
        computed = [known[day] for day in missing]
        for point in computed:
            cache.put(("point", kind, point.day), digests[point.day], point, POINT_SIZE)
        if (shared_as := _shared_kind(kind)) is not None:
            shared = {point.day: encoded_point(point, digests[point.day]) for point in computed}
            await self._reads.share(shared_as, shared)
        return [known[day] for day in days], distinct

    async def _in_redis(self, work: _Work, missing: Sequence[date]) -> int:
        """Add the ``missing`` points to ``known`` from unions in Redis, and return the distinct users of ``days``:
        each window is the union of its past days (kept in Redis while they keep their versions) and its last day,
        so today's point costs a few ORs of two bitmaps per bucket instead of moving a month of bitmaps."""
        feed, known = work.feed, work.known
        groups: list[Sequence[date]] = []
        for day in missing:
            end = feed.index(day) + 1
            groups += [[day], feed[max(0, end - WEEK_DAYS) : end], feed[max(0, end - MONTH_DAYS) : end]]
        *counts, distinct = await self._reads.day_union_counts([*groups, work.days], work.versions, work.kind)
        for n, day in enumerate(missing):
            known[day] = DayPoint(day, *counts[3 * n : 3 * n + 3])
        return distinct

    async def _from_masks(self, work: _Work, missing: Sequence[date]) -> int:
        """Add the ``missing`` points to ``known`` from the masks of their windows (three ORs per point), and
        return the distinct users of ``days``: of the masks at hand when every point was computed, else unioned in
        Redis."""
        feed, days = work.feed, work.days
        window = feed[max(feed.index(missing[0]) - LOOKBACK_DAYS, 0) : feed.index(missing[-1]) + 1]
        masks = await self._reads.day_masks(window, work.versions, work.kind)
        computed, union = summarize(window[0], masks, missing[0], work.known)
        work.known.update((point.day, point) for point in computed)
        if (missing[0], missing[-1]) == (days[0], days[-1]):
            self._reads.keep_union_count([days], work.versions, [union], work.kind)
            return union
        (distinct,) = await self._reads.day_union_counts([days], work.versions, work.kind)
        return distinct

    async def _known_points(self, digests: dict[date, str], kind: MaskKind) -> dict[date, DayPoint]:
        """The points of the days of ``digests`` computed before from the same data: this process' first, then
        those any process saved in Redis."""
        cache = self._reads.cache
        known = {day: point for day, digest in digests.items() if (point := cache.get(("point", kind, day), digest))}
        if len(known) < len(digests) and (shared_as := _shared_kind(kind)) is not None:
            wanted = [day for day in digests if day not in known]
            for day, text in (await self._reads.reader.derived(shared_as, wanted)).items():
                if (point := decoded_point(day, text, digests[day])) is not None:
                    known[day] = point
                    cache.put(("point", kind, day), digests[day], point, POINT_SIZE)
        return known


def _shared_kind(kind: MaskKind) -> str | None:
    """The kind the points of ``kind`` are kept under in Redis (``KeySchema.derived_field``): ``point`` for the
    active users, ``point.<property>.<id>`` for a segment's; none for a value no registry holds."""
    if isinstance(kind, Segment):
        return f"{POINT}.{kind.property}.{kind.value}" if kind.value >= 0 else None
    return POINT


def _window_digests(feed: Sequence[date], versions: Versions, first: int) -> dict[date, str]:
    """For each day of ``feed[first:]``: the digest of what its point is computed from (its windows' first day
    and every window day's index version)."""
    digests: dict[date, str] = {}
    for i in range(first, len(feed)):
        window = feed[max(0, i - LOOKBACK_DAYS) : i + 1]
        digests[feed[i]] = digest((window[0], *(versions[day] for day in window)))
    return digests
