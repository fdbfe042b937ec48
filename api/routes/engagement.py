"""The engagement dashboard's Users tab, ``GET /api/v1/engagement-dashboard/users/*``: Rocket.Chat's five
endpoints, byte for byte.

Every handler runs the same guarded validation, clips what it asks Redis to the buckets that can hold data
(inside retention, not in the future), counts from the index's bitmaps (and lists active-users' ids from them)
and shapes the answer with the pure functions of :mod:`api.dashboard`.
"""

from __future__ import annotations

from datetime import date
from typing import Final

from aiohttp import web

from activeusers.days import day_of, hours_overlapping, hours_starting_in
from api.dashboard import (
    by_time_of_day_answer,
    hourly_answer,
    hourly_window,
    new_users_answer,
    new_users_window,
    slot_groups,
    weekly_answer,
    weekly_days,
)
from api.dates import DATE_PARAMS, START_PARAMS, iso_ms
from api.indexreads import day_counts, hour_counts, hour_union_counts, new_user_counts
from api.responses import json_bytes_response, json_response
from api.routes.common import Store, authorized_query, requested_days, stored_days
from api.state import DAY_CACHE, READER, SETTINGS, now_ms
from api.userlists import day_fragments

PREFIX: Final = "/api/v1/engagement-dashboard/users/"
ACTIVE_USERS: Final = PREFIX + "active-users"
NEW_USERS: Final = PREFIX + "new-users"
BY_TIME_OF_DAY: Final = PREFIX + "users-by-time-of-the-day-in-a-week"
HOURLY: Final = PREFIX + "chat-busier/hourly-data"
WEEKLY: Final = PREFIX + "chat-busier/weekly-data"
# Ranges of active-users of at most this many days are cached as whole answers (a day's element of 10k users is
# about 200 kB; the cache is bounded by API_CACHE_BYTES anyway).
ANSWER_DAYS: Final = 7


async def active_users(request: web.Request) -> web.Response:
    """Users active on each day of the range that had any, newest day first, every id listed (from the index's
    day bitmaps, for every day inside ``RETENTION_DAYS``)."""
    _, days, versions = await authorized_query(request, DATE_PARAMS, lambda query: _range_days(request, query))
    cache = request.app[DAY_CACHE]
    # A short range's answer is kept whole under its days' versions: joining a day of 10k ids (200 kB) again for
    # every request costs more than the request's other work. Longer ones are joined from the days' elements.
    key, version = ("active-users answer", *days[:1], *days[-1:]), tuple(versions[day] for day in days)
    body: bytes | None = cache.get(key, version) if len(days) <= ANSWER_DAYS else None
    if body is None:
        today = day_of(now_ms(request.app), request.app[SETTINGS].zone)
        found = await day_fragments(request.app[READER], cache, days, versions, growing=today)
        fragments = [found[day] for day in sorted(found, reverse=True)]
        # The days' encoded elements are joined as they are: the same bytes orjson writes for the whole answer,
        # copied once (a single join over the pieces and their separators).
        pieces = [b'{"month":[']
        for fragment in fragments:
            pieces += (fragment, b",")
        if fragments:
            pieces.pop()
        pieces.append(b'],"success":true}')
        body = b"".join(pieces)
        if len(days) <= ANSWER_DAYS:
            cache.put(key, version, body, len(body))
    return json_bytes_response(body)


def _range_days(request: web.Request, query: dict[str, str], store: Store = "days") -> list[date]:
    """The days of ``start..end`` that can hold data in ``store``."""
    first, last = requested_days(request, query["start"], query["end"])
    return stored_days(request, first, last, store)


async def new_users(request: web.Request) -> web.Response:
    """Users created per day of the range (at most ``D`` days), the period's total against the previous period's,
    and ``end``'s day against the day before."""
    query, days, versions = await authorized_query(request, DATE_PARAMS, lambda query: _new_users_days(request, query))
    zone = request.app[SETTINGS].zone
    window = new_users_window(iso_ms(query["start"]), iso_ms(query["end"]), zone)
    counts = {}
    if days:
        counts = await new_user_counts(request.app[READER], request.app[DAY_CACHE], days, versions)
    return json_response(new_users_answer(window, counts, zone))


def _new_users_days(request: web.Request, query: dict[str, str]) -> list[date]:
    """The days of both of new-users' periods that can hold data (none when ``D <= 0``)."""
    window = new_users_window(iso_ms(query["start"]), iso_ms(query["end"]), request.app[SETTINGS].zone)
    return stored_days(request, window.oldest, window.last) if window.limit > 0 else []


async def users_by_time_of_day(request: web.Request) -> web.Response:
    """Distinct active users of every local hour bucket overlapping ``[start, end]`` that had any."""
    query, days, versions = await authorized_query(request, DATE_PARAMS, lambda query: _hour_days(request, query))
    counts = {}
    if days:
        start_ms, end_ms = iso_ms(query["start"]), iso_ms(query["end"])
        spans = hours_overlapping(days, start_ms, end_ms, request.app[SETTINGS].zone)
        hours = [(span.day, span.hour) for span in spans]
        counts = await hour_counts(request.app[READER], request.app[DAY_CACHE], hours, versions)
    return json_response(by_time_of_day_answer(counts))


def _hour_days(request: web.Request, query: dict[str, str]) -> list[date]:
    """The days of ``start..end`` that can hold hour data (none for a reversed range)."""
    if iso_ms(query["start"]) > iso_ms(query["end"]):
        return []
    return _range_days(request, query, "hours")


async def hourly_data(request: web.Request) -> web.Response:
    """Distinct active users of each two-hour slot of the 24 hour buckets up to ``start``."""
    query, days, versions = await authorized_query(request, START_PARAMS, lambda query: _hourly_days(request, query))
    zone = request.app[SETTINGS].zone
    after, until, _, _ = hourly_window(iso_ms(query["start"]), zone)
    spans = hours_starting_in(days, after, until, zone)
    counts = await hour_union_counts(request.app[READER], request.app[DAY_CACHE], slot_groups(spans), versions)
    return json_response(hourly_answer(counts))


def _hourly_days(request: web.Request, query: dict[str, str]) -> list[date]:
    """The days of hourly-data's 24 hours that can hold hour data."""
    _, _, first, last = hourly_window(iso_ms(query["start"]), request.app[SETTINGS].zone)
    return stored_days(request, first, last, "hours")


async def weekly_data(request: web.Request) -> web.Response:
    """Distinct active users of each of the 8 days ``day(start) - 7 .. day(start)`` that had any."""
    _, days, versions = await authorized_query(request, START_PARAMS, lambda query: _weekly_days(request, query))
    counts = await day_counts(request.app[READER], request.app[DAY_CACHE], days, versions)
    return json_response(weekly_answer(counts))


def _weekly_days(request: web.Request, query: dict[str, str]) -> list[date]:
    """The days of weekly-data's 8 days that can hold data."""
    first, last = weekly_days(iso_ms(query["start"]), request.app[SETTINGS].zone)
    return stored_days(request, first, last)
