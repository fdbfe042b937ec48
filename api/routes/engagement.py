"""The engagement dashboard's Users tab, ``GET /api/v1/engagement-dashboard/users/*``: Rocket.Chat's five
endpoints, byte for byte.

Every handler runs the same guarded validation, clips what it asks Redis to the buckets that can hold data
(inside retention, not in the future), counts from the index's bitmaps (and lists active-users' ids from them)
and shapes the answer with the pure functions of :mod:`api.dashboard`.
"""

from __future__ import annotations

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
from api.routes.common import authorized_query, requested_days, stored_days
from api.state import DAY_CACHE, READER, SETTINGS, now_ms
from api.userlists import day_fragments

PREFIX: Final = "/api/v1/engagement-dashboard/users/"
ACTIVE_USERS: Final = PREFIX + "active-users"
NEW_USERS: Final = PREFIX + "new-users"
BY_TIME_OF_DAY: Final = PREFIX + "users-by-time-of-the-day-in-a-week"
HOURLY: Final = PREFIX + "chat-busier/hourly-data"
WEEKLY: Final = PREFIX + "chat-busier/weekly-data"


async def active_users(request: web.Request) -> web.Response:
    """Users active on each day of the range that had any, newest day first, every id listed (from the index's
    day bitmaps, for every day inside ``RETENTION_DAYS``)."""
    query = await authorized_query(request, DATE_PARAMS)
    first, last = requested_days(request, query["start"], query["end"])
    today = day_of(now_ms(request.app), request.app[SETTINGS].zone)
    days = stored_days(request, first, last)
    found = await day_fragments(request.app[READER], request.app[DAY_CACHE], days, growing=today)
    fragments = [found[day] for day in sorted(found, reverse=True)]
    # The days' encoded elements are joined as they are: the same bytes orjson writes for the whole answer, copied
    # once (a single join over the pieces and their separators).
    pieces = [b'{"month":[']
    for fragment in fragments:
        pieces += (fragment, b",")
    if fragments:
        pieces.pop()
    pieces.append(b'],"success":true}')
    return json_bytes_response(b"".join(pieces))


async def new_users(request: web.Request) -> web.Response:
    """Users created per day of the range (at most ``D`` days), the period's total against the previous period's,
    and ``end``'s day against the day before."""
    query = await authorized_query(request, DATE_PARAMS)
    zone = request.app[SETTINGS].zone
    window = new_users_window(iso_ms(query["start"]), iso_ms(query["end"]), zone)
    counts = {}
    if window.limit > 0:
        days = stored_days(request, window.oldest, window.last)
        counts = await new_user_counts(request.app[READER], request.app[DAY_CACHE], days)
    return json_response(new_users_answer(window, counts, zone))


async def users_by_time_of_day(request: web.Request) -> web.Response:
    """Distinct active users of every local hour bucket overlapping ``[start, end]`` that had any."""
    query = await authorized_query(request, DATE_PARAMS)
    start_ms, end_ms = iso_ms(query["start"]), iso_ms(query["end"])
    counts = {}
    if start_ms <= end_ms:
        first, last = requested_days(request, query["start"], query["end"])
        days = stored_days(request, first, last, "hours")
        spans = hours_overlapping(days, start_ms, end_ms, request.app[SETTINGS].zone)
        hours = [(span.day, span.hour) for span in spans]
        counts = await hour_counts(request.app[READER], request.app[DAY_CACHE], hours)
    return json_response(by_time_of_day_answer(counts))


async def hourly_data(request: web.Request) -> web.Response:
    """Distinct active users of each two-hour slot of the 24 hour buckets up to ``start``."""
    query = await authorized_query(request, START_PARAMS)
    zone = request.app[SETTINGS].zone
    after, until, first, last = hourly_window(iso_ms(query["start"]), zone)
    spans = hours_starting_in(stored_days(request, first, last, "hours"), after, until, zone)
    counts = await hour_union_counts(request.app[READER], request.app[DAY_CACHE], slot_groups(spans))
    return json_response(hourly_answer(counts))


async def weekly_data(request: web.Request) -> web.Response:
    """Distinct active users of each of the 8 days ``day(start) - 7 .. day(start)`` that had any."""
    query = await authorized_query(request, START_PARAMS)
    first, last = weekly_days(iso_ms(query["start"]), request.app[SETTINGS].zone)
    counts = await day_counts(request.app[READER], request.app[DAY_CACHE], stored_days(request, first, last))
    return json_response(weekly_answer(counts))
