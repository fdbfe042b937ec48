"""``GET /api/v1/active-users/summary``: exact distinct users of a range and per-day DAU/WAU/MAU (our extension)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

import orjson
from aiohttp import web

from activeusers.days import WEEK_DAYS
from activeusers.reader import ActivityReader
from api.dates import DATE_PARAMS, Param
from api.daycache import DayCache
from api.indexreads import day_masks, day_union_counts, digest, keep_union_count, share
from api.responses import csv_bytes_response, json_bytes_response
from api.routes.common import authorized_query, requested_days, stored_days
from api.state import DAY_CACHE, READER, SETTINGS
from api.summary import LOOKBACK_DAYS, MONTH_DAYS, DayPoint, decoded_point, encoded_point, summarize

PATH: Final = "/api/v1/active-users/summary"
FORMATS: Final = ("json", "csv")
PARAMS: Final = (*DATE_PARAMS, Param("format", False, FORMATS.__contains__))
CSV_HEADER: Final = "date,dau,wau,mau"
# Estimated bytes of one cached point.
POINT_SIZE: Final = 200
# The kind of the points kept in Redis for every API process (KeySchema.derived_field).
POINT: Final = "point"
# Points computed in Redis when at most this many are missing (today's; yesterday's too just after midnight): a
# few unions per bucket there, where more points cost less from masks (three ORs each).
REDIS_POINTS: Final = 2


async def summary(request: web.Request) -> web.Response:
    """Every day of the range that can hold data, with its rolling windows, as JSON or CSV."""
    query, feed, versions = await authorized_query(request, PARAMS, lambda query: _feed(request, _days(request, query)))
    days = _days(request, query)
    csv = query.get("format") == "csv"
    if not days:
        body = _rendered(request, days, [], 0, csv)
    else:
        cache = request.app[DAY_CACHE]
        # The answer depends on nothing but these days' index versions: while they hold, the bytes made last time
        # are the answer (points, digests and encoding cost several times the rest of a warm request).
        key, version = ("summary answer", days[0], days[-1], csv), (feed[0], *versions.values())
        body = cache.get(key, version)
        if body is None:
            points, distinct = await _points(request, feed, days, versions)
            body = _rendered(request, days, points, distinct, csv)
            cache.put(key, version, body, len(body))
    return csv_bytes_response(body) if csv else json_bytes_response(body)


def _days(request: web.Request, query: dict[str, str]) -> list[date]:
    """The days of the range that can hold data."""
    first, last = requested_days(request, query["start"], query["end"])
    return stored_days(request, first, last)


def _feed(request: web.Request, days: Sequence[date]) -> list[date]:
    """The days the windows of ``days`` read: theirs and the 29 before them (windows reach back before the range
    to fill the first days' WAU and MAU), as far as they can hold data."""
    return stored_days(request, days[0] - timedelta(days=LOOKBACK_DAYS), days[-1]) if days else []


def _rendered(request: web.Request, days: Sequence[date], points: list[DayPoint], distinct: int, csv: bool) -> bytes:
    """The answer's body: CSV rows, or the JSON document with its keys in the contract's order."""
    if csv:
        rows = [CSV_HEADER, *(f"{p.day.isoformat()},{p.dau},{p.wau},{p.mau}" for p in points)]
        return "".join(row + "\r\n" for row in rows).encode()
    return orjson.dumps(
        {
            "timezone": request.app[SETTINGS].activity_timezone,
            "start": days[0].isoformat() if days else None,
            "end": days[-1].isoformat() if days else None,
            "distinctUsers": distinct,
            "days": [{"date": p.day.isoformat(), "dau": p.dau, "wau": p.wau, "mau": p.mau} for p in points],
            "success": True,
        }
    )


@dataclass(frozen=True, slots=True)
class _Work:
    """What computing a range's missing points works with: the reader and cache, the days feeding the windows
    (``feed``, the range's and the 29 before), the range, their versions, and the points known so far."""

    reader: ActivityReader
    cache: DayCache
    feed: Sequence[date]
    days: Sequence[date]
    versions: dict[date, str | None]
    known: dict[date, DayPoint]


async def _points(
    request: web.Request, feed: Sequence[date], days: Sequence[date], versions: dict[date, str | None]
) -> tuple[list[DayPoint], int]:
    """The points of ``days`` and their distinct users (``feed``: the days of their windows, whose index versions
    are ``versions``).

    A point depends only on the days of its windows, so it is kept, with the digest of those days' index
    versions, in this process' cache and in Redis for every process: a new one computes only the points of
    changed days (today's while it is today, and late events' days). A few are computed in Redis, many from the
    masks of their windows (:func:`_points_from_masks`).
    """
    reader, cache = request.app[READER], request.app[DAY_CACHE]
    digests = _window_digests(feed, versions, feed.index(days[0]))
    known = await _known_points(reader, cache, digests)
    missing = [day for day in days if day not in known]
    work = _Work(reader, cache, feed, days, versions, known)
    distinct = await (_points_from_masks if len(missing) > REDIS_POINTS else _points_in_redis)(work, missing)
    computed = [known[day] for day in missing]
    for point in computed:
        cache.put(("point", point.day), digests[point.day], point, POINT_SIZE)
    await share(reader, POINT, {point.day: encoded_point(point, digests[point.day]) for point in computed})
    return [known[day] for day in days], distinct


async def _points_in_redis(work: _Work, missing: Sequence[date]) -> int:
    """Add the ``missing`` points to ``known`` from unions in Redis, and return the distinct users of ``days``:
    each window is the union of its past days (kept in Redis while they keep their versions) and its last day,
    so today's point costs a few ORs of two bitmaps per bucket (the 30 days of bitmaps of a mask's window
    would move about 2 MB at the large dataset)."""
    feed, known = work.feed, work.known
    groups: list[Sequence[date]] = []
    for day in missing:
        end = feed.index(day) + 1
        groups += [[day], feed[max(0, end - WEEK_DAYS) : end], feed[max(0, end - MONTH_DAYS) : end]]
    *counts, distinct = await day_union_counts(work.reader, work.cache, [*groups, work.days], work.versions)
    for n, day in enumerate(missing):
        known[day] = DayPoint(day, *counts[3 * n : 3 * n + 3])
    return distinct


async def _points_from_masks(work: _Work, missing: Sequence[date]) -> int:
    """Add the ``missing`` points to ``known`` from the masks of their windows (three ORs per point), and return
    the distinct users of ``days``: of the masks at hand when every point was computed, else unioned in Redis."""
    feed, days = work.feed, work.days
    window = feed[max(feed.index(missing[0]) - LOOKBACK_DAYS, 0) : feed.index(missing[-1]) + 1]
    masks = await day_masks(work.reader, work.cache, window, work.versions)
    computed, union = summarize(window[0], masks, missing[0], work.known)
    work.known.update((point.day, point) for point in computed)
    if (missing[0], missing[-1]) == (days[0], days[-1]):
        keep_union_count(work.cache, [days], work.versions, [union])
        return union
    (distinct,) = await day_union_counts(work.reader, work.cache, [days], work.versions)
    return distinct


def _window_digests(feed: Sequence[date], versions: dict[date, str | None], first: int) -> dict[date, str]:
    """For each day of ``feed[first:]``: the digest of what its point is computed from (its windows' first day
    and every window day's index version)."""
    digests: dict[date, str] = {}
    for i in range(first, len(feed)):
        window = feed[max(0, i - LOOKBACK_DAYS) : i + 1]
        digests[feed[i]] = digest((window[0], *(versions[day] for day in window)))
    return digests


async def _known_points(reader: ActivityReader, cache: DayCache, digests: dict[date, str]) -> dict[date, DayPoint]:
    """The points of the days of ``digests`` computed before from the same data: this process' first, then
    those any process saved in Redis."""
    known = {day: point for day, digest in digests.items() if (point := cache.get(("point", day), digest))}
    if len(known) < len(digests):
        for day, text in (await reader.derived(POINT, [day for day in digests if day not in known])).items():
            if (point := decoded_point(day, text, digests[day])) is not None:
                known[day] = point
                cache.put(("point", day), digests[day], point, POINT_SIZE)
    return known
