"""``GET /api/v1/active-users/summary``: exact distinct users of a range and per-day DAU/WAU/MAU (our extension)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Final

from aiohttp import web

from activeusers.store import ActivityReader
from api.dates import DATE_PARAMS, Param
from api.daycache import DayCache
from api.indexreads import day_masks, day_union_counts, keep_union_count, share
from api.responses import csv_response, json_response
from api.routes.common import authorized_query, requested_days, stored_days
from api.state import DAY_CACHE, READER, SETTINGS
from api.summary import LOOKBACK_DAYS, DayPoint, decoded_point, encoded_point, summarize

PATH: Final = "/api/v1/active-users/summary"
FORMATS: Final = ("json", "csv")
PARAMS: Final = (*DATE_PARAMS, Param("format", False, FORMATS.__contains__))
CSV_HEADER: Final = "date,dau,wau,mau"
# Estimated bytes of one cached point.
POINT_SIZE: Final = 200
DIGEST_BYTES: Final = 12
# The kind of the points kept in Redis for every API process (KeySchema.derived_field).
POINT: Final = "point"


async def summary(request: web.Request) -> web.Response:
    """Every day of the range that can hold data, with its rolling windows, as JSON or CSV."""
    query = await authorized_query(request, PARAMS)
    first, last = requested_days(request, query["start"], query["end"])
    days = stored_days(request, first, last)
    points: list[DayPoint] = []
    distinct = 0
    if days:
        points, distinct = await _points(request, days)
    if query.get("format") == "csv":
        rows = [CSV_HEADER, *(f"{p.day.isoformat()},{p.dau},{p.wau},{p.mau}" for p in points)]
        return csv_response("".join(row + "\r\n" for row in rows))
    return json_response(
        {
            "timezone": request.app[SETTINGS].activity_timezone,
            "start": days[0].isoformat() if days else None,
            "end": days[-1].isoformat() if days else None,
            "distinctUsers": distinct,
            "days": [{"date": p.day.isoformat(), "dau": p.dau, "wau": p.wau, "mau": p.mau} for p in points],
            "success": True,
        }
    )


async def _points(request: web.Request, days: Sequence[date]) -> tuple[list[DayPoint], int]:
    """The points of ``days`` and their distinct users.

    A point depends only on the days of its windows, so it is kept, with the digest of those days' index
    versions, in this process' cache and in Redis for every process (a new one then computes only the points of
    changed days: today's while it is today, and late events' days), from the masks of their windows only. The
    range's distinct users come with the points when every day is computed, else from a union in Redis (kept in
    the process like the points).
    """
    reader, cache = request.app[READER], request.app[DAY_CACHE]
    # Windows reach back before the range: the 29 days before it feed the first days' WAU and MAU.
    feed = stored_days(request, days[0] - timedelta(days=LOOKBACK_DAYS), days[-1])
    versions = await reader.day_versions(feed)
    digests = _window_digests(feed, versions, feed.index(days[0]))
    known = await _known_points(reader, cache, digests)
    missing = [day for day in days if day not in known]
    distinct = None
    if missing:
        # Only the windows of the points to compute: today's 30 days when only today changed.
        window = feed[max(feed.index(missing[0]) - LOOKBACK_DAYS, 0) : feed.index(missing[-1]) + 1]
        masks = await day_masks(reader, cache, window, versions)
        computed, union = summarize(window[0], masks, missing[0], known)
        if (missing[0], missing[-1]) == (days[0], days[-1]):
            distinct = union
            keep_union_count(cache, [days], versions, [distinct])
        known.update((point.day, point) for point in computed)
    if distinct is None:
        (distinct,) = await day_union_counts(reader, cache, [days], versions)
    computed = [known[day] for day in missing]
    for point in computed:
        cache.put(("point", point.day), digests[point.day], point, POINT_SIZE)
    await share(reader, POINT, {point.day: encoded_point(point, digests[point.day]) for point in computed})
    return [known[day] for day in days], distinct


def _window_digests(feed: Sequence[date], versions: dict[date, str | None], first: int) -> dict[date, str]:
    """For each day of ``feed[first:]``: the digest of what its point is computed from (its windows' first day
    and every window day's index version)."""
    digests: dict[date, str] = {}
    for i in range(first, len(feed)):
        window = feed[max(0, i - LOOKBACK_DAYS) : i + 1]
        seen = repr((window[0], *(versions[day] for day in window))).encode()
        digests[feed[i]] = hashlib.blake2b(seen, digest_size=DIGEST_BYTES).hexdigest()
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
