"""The engagement dashboard's Users tab, ``GET /api/v1/engagement-dashboard/users/*``: Rocket.Chat's five
endpoints, byte for byte.

Each endpoint names the days its query reads (inside retention, not in the future), asks :class:`Activity` for
their counts (or active-users' ids) and shapes the answer with the pure functions of :mod:`api.dashboard`.
"""

from __future__ import annotations

from datetime import date
from typing import Final

from aiohttp import web

from activeusers.days import hours_overlapping, hours_starting_in
from activeusers.settings import Retained
from api.activity import Activity
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
from api.responses import json_bytes_response, json_response
from api.routes.guarded import Asked, Query, guarded

PREFIX: Final = "/api/v1/engagement-dashboard/users/"
ACTIVE_USERS: Final = PREFIX + "active-users"
NEW_USERS: Final = PREFIX + "new-users"
BY_TIME_OF_DAY: Final = PREFIX + "users-by-time-of-the-day-in-a-week"
HOURLY: Final = PREFIX + "chat-busier/hourly-data"
WEEKLY: Final = PREFIX + "chat-busier/weekly-data"
# Ranges of active-users of at most this many days are kept as whole answers (the cache is bounded by
# API_CACHE_BYTES anyway).
ANSWER_DAYS: Final = 7


def _range_days(activity: Activity, query: Query, data: Retained = "days") -> list[date]:
    """The days of ``start..end`` that can hold ``data``."""
    first, last = activity.requested_days(query["start"], query["end"])
    return activity.stored_days(first, last, data)


async def _active_users(activity: Activity, asked: Asked) -> web.Response:
    """Users active on each day of the range that had any, newest day first, every id listed (from the index's
    day bitmaps, for every day inside ``RETENTION_DAYS``)."""
    days, versions = asked.days, asked.versions

    async def joined() -> bytes:
        found = await activity.day_elements(days, versions)
        # The days' encoded elements are joined as they are: the same bytes orjson writes for the whole answer,
        # copied once (a single join over the pieces and their separators).
        return b'{"month":[' + b",".join(found[day] for day in sorted(found, reverse=True)) + b'],"success":true}'

    # A short range's answer is kept whole under its days' versions: joining a day's ids again for every request
    # costs more than the request's other work. Longer ones are joined from the days' kept elements.
    if len(days) > ANSWER_DAYS:
        return json_bytes_response(await joined())
    key, version = ("active-users answer", *days[:1], *days[-1:]), tuple(versions[day] for day in days)
    return json_bytes_response(await activity.kept_answer(key, version, joined))


def _new_users_days(activity: Activity, query: Query) -> list[date]:
    """The days of both of new-users' periods that can hold data (none when ``D <= 0``)."""
    window = new_users_window(iso_ms(query["start"]), iso_ms(query["end"]), activity.settings.zone)
    return activity.stored_days(window.oldest, window.last) if window.limit > 0 else []


async def _new_users(activity: Activity, asked: Asked) -> web.Response:
    """Users created per day of the range (at most ``D`` days), the period's total against the previous period's,
    and ``end``'s day against the day before."""
    zone = activity.settings.zone
    window = new_users_window(iso_ms(asked.query["start"]), iso_ms(asked.query["end"]), zone)
    counts = await activity.new_user_counts(asked.days, asked.versions) if asked.days else {}
    return json_response(new_users_answer(window, counts, zone))


def _hour_days(activity: Activity, query: Query) -> list[date]:
    """The days of ``start..end`` that can hold hour data (none for a reversed range)."""
    if iso_ms(query["start"]) > iso_ms(query["end"]):
        return []
    return _range_days(activity, query, "hours")


async def _by_time_of_day(activity: Activity, asked: Asked) -> web.Response:
    """Distinct active users of every local hour overlapping ``[start, end]`` that had any."""
    counts = {}
    if asked.days:
        start_ms, end_ms = iso_ms(asked.query["start"]), iso_ms(asked.query["end"])
        spans = hours_overlapping(asked.days, start_ms, end_ms, activity.settings.zone)
        counts = await activity.hour_counts([(span.day, span.hour) for span in spans], asked.versions)
    return json_response(by_time_of_day_answer(counts))


def _hourly_days(activity: Activity, query: Query) -> list[date]:
    """The days of hourly-data's 24 hours that can hold hour data."""
    _, _, first, last = hourly_window(iso_ms(query["start"]), activity.settings.zone)
    return activity.stored_days(first, last, "hours")


async def _hourly(activity: Activity, asked: Asked) -> web.Response:
    """Distinct active users of each two-hour slot of the 24 local hours up to ``start``."""
    zone = activity.settings.zone
    after, until, _, _ = hourly_window(iso_ms(asked.query["start"]), zone)
    spans = hours_starting_in(asked.days, after, until, zone)
    return json_response(hourly_answer(await activity.hour_union_counts(slot_groups(spans), asked.versions)))


def _weekly_days(activity: Activity, query: Query) -> list[date]:
    """The days of weekly-data's 8 days that can hold data."""
    first, last = weekly_days(iso_ms(query["start"]), activity.settings.zone)
    return activity.stored_days(first, last)


async def _weekly(activity: Activity, asked: Asked) -> web.Response:
    """Distinct active users of each of the 8 days ``day(start) - 7 .. day(start)`` that had any."""
    return json_response(weekly_answer(await activity.day_counts(asked.days, asked.versions)))


active_users: Final = guarded(DATE_PARAMS, _range_days, _active_users)
new_users: Final = guarded(DATE_PARAMS, _new_users_days, _new_users)
users_by_time_of_day: Final = guarded(DATE_PARAMS, _hour_days, _by_time_of_day)
hourly_data: Final = guarded(START_PARAMS, _hourly_days, _hourly)
weekly_data: Final = guarded(START_PARAMS, _weekly_days, _weekly)
