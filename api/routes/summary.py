"""``GET /api/v1/active-users/summary``: exact distinct users of a range and per-day DAU/WAU/MAU (our extension)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Final

import orjson
from aiohttp import web

from api.activity import Activity
from api.dates import DATE_PARAMS, Param
from api.responses import csv_body, csv_bytes_response, json_bytes_response
from api.routes.breakdown import SEGMENT_PARAM
from api.routes.guarded import Asked, Query, guarded
from api.windows import LOOKBACK_DAYS, DayPoint

PATH: Final = "/api/v1/active-users/summary"
FORMATS: Final = ("json", "csv")
PARAMS: Final = (*DATE_PARAMS, Param("format", False, FORMATS.__contains__))
CSV_HEADER: Final = "date,dau,wau,mau"


def _days(activity: Activity, query: Query) -> list[date]:
    """The days of the range that can hold data."""
    first, last = activity.requested_days(query["start"], query["end"])
    return activity.stored_days(first, last)


def _feed(activity: Activity, query: Query) -> list[date]:
    """The days the windows of the range's days read: theirs and the 29 before them (windows reach back before
    the range to fill the first days' WAU and MAU), as far as they can hold data."""
    days = _days(activity, query)
    return activity.stored_days(days[0] - timedelta(days=LOOKBACK_DAYS), days[-1]) if days else []


async def _summary(activity: Activity, asked: Asked) -> web.Response:
    """Every day of the range that can hold data, with its rolling windows, as JSON or CSV."""
    feed, versions = asked.days, asked.versions
    days = _days(activity, asked.query)
    csv, segment = asked.query.get("format") == "csv", asked.query.get("segment")
    kind = await activity.active_kind(segment)

    async def made() -> bytes:
        if not days:
            return _rendered(activity, days, [], 0, csv)
        points, distinct = await activity.summary_points(feed, days, versions, kind)
        return _rendered(activity, days, points, distinct, csv)

    if days:
        # The answer depends on nothing but these days' index versions: while they hold, the bytes made last
        # time are the answer (points, digests and encoding cost several times the rest of a warm request).
        body = await activity.kept_answer(
            ("summary answer", days[0], days[-1], csv, kind), (feed[0], *versions.values()), made
        )
    else:
        body = await made()
    return csv_bytes_response(body) if csv else json_bytes_response(body)


def _rendered(activity: Activity, days: Sequence[date], points: list[DayPoint], distinct: int, csv: bool) -> bytes:
    """The answer's body: CSV rows, or the JSON document with its keys in the contract's order."""
    if csv:
        rows = [CSV_HEADER, *(f"{p.day.isoformat()},{p.dau},{p.wau},{p.mau}" for p in points)]
        return csv_body(rows)
    return orjson.dumps(
        {
            "timezone": activity.settings.activity_timezone,
            "start": days[0].isoformat() if days else None,
            "end": days[-1].isoformat() if days else None,
            "distinctUsers": distinct,
            "days": [{"date": p.day.isoformat(), "dau": p.dau, "wau": p.wau, "mau": p.mau} for p in points],
            "success": True,
        }
    )


summary: Final = guarded(PARAMS, _feed, _summary, (SEGMENT_PARAM,))
