"""``GET /api/v1/active-users/summary``: exact distinct users of a range and per-day DAU/WAU/MAU (our extension)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from aiohttp import web

from api.dates import DATE_PARAMS, Param
from api.responses import csv_response, json_response
from api.routes.common import authorized_query, requested_days, stored_days
from api.state import READER, SETTINGS
from api.summary import LOOKBACK_DAYS, DayPoint, summarize

PATH: Final = "/api/v1/active-users/summary"
FORMATS: Final = ("json", "csv")
PARAMS: Final = (*DATE_PARAMS, Param("format", False, FORMATS.__contains__))
CSV_HEADER: Final = "date,dau,wau,mau"


async def summary(request: web.Request) -> web.Response:
    """Every day of the range that can hold data, with its rolling windows, as JSON or CSV."""
    query = await authorized_query(request, PARAMS)
    first, last = requested_days(request, query["start"], query["end"])
    days = stored_days(request, first, last)
    points: list[DayPoint] = []
    distinct = 0
    if days:
        # Windows reach back before the range: the 29 days before it feed the first days' WAU and MAU.
        feed = stored_days(request, days[0] - timedelta(days=LOOKBACK_DAYS), days[-1])
        masks = await request.app[READER].day_masks(feed)
        points, distinct = summarize(feed[0], masks, days[0])
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
