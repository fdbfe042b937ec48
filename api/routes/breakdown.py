"""``GET /api/v1/active-users/breakdown``: a range's DAU and distinct users per value of an indexed property (our
extension), and the ``segment`` parameter the summary, stickiness and retention take. The answer is kept whole
under the index versions of the days it reads."""

from __future__ import annotations

from datetime import date
from typing import Final

import orjson
from aiohttp import web

from api.activity import Activity
from api.dates import DATE_PARAMS, Param
from api.responses import csv_body, csv_bytes_response, json_bytes_response
from api.routes.guarded import Asked, Query, guarded
from api.segments import ValueRow, segment_parts

PATH: Final = "/api/v1/active-users/breakdown"
FORMATS: Final = ("json", "csv")
# Whether the property is indexed is a setting, checked by the adapter (api.routes.guarded).
SEGMENT_PARAM: Final = Param("segment", False, lambda value: segment_parts(value) is not None)
PARAMS: Final = (Param("property", True, bool), Param("format", False, FORMATS.__contains__))


def _days(activity: Activity, query: Query) -> list[date]:
    """The days of the range that can hold data."""
    return activity.stored_days(*activity.requested_days(query["start"], query["end"]))


async def _breakdown(activity: Activity, asked: Asked) -> web.Response:
    """The values of the property with users in the range, as JSON or CSV (``date,value,dau``)."""
    days, name, csv = asked.days, asked.query["property"], asked.query.get("format") == "csv"

    async def made() -> bytes:
        rows = await activity.breakdown(name, days, asked.versions)
        return _csv(days, rows) if csv else _json(activity, days, name, rows)

    key = ("breakdown answer", name, days[0] if days else None, days[-1] if days else None, csv)
    body = await activity.kept_answer(key, tuple(asked.versions.values()), made)
    return csv_bytes_response(body) if csv else json_bytes_response(body)


def _json(activity: Activity, days: list[date], name: str, rows: list[ValueRow]) -> bytes:
    dates = [day.isoformat() for day in days]
    return orjson.dumps(
        {
            "timezone": activity.settings.activity_timezone,
            "start": dates[0] if dates else None,
            "end": dates[-1] if dates else None,
            "property": name,
            "values": [
                {
                    "value": row.value,
                    "distinctUsers": row.distinct,
                    "days": [{"date": day, "dau": dau} for day, dau in zip(dates, row.daily, strict=True)],
                }
                for row in rows
            ],
            "success": True,
        }
    )


def _csv(days: list[date], rows: list[ValueRow]) -> bytes:
    """``date,value,dau``: day by day, oldest first, each day's values in the answer's order; a value is quoted
    when it holds a comma, a quote or a line end."""
    lines = ["date,value,dau"]
    for i, day in enumerate(days):
        lines += [f"{day.isoformat()},{_cell(row.value)},{row.daily[i]}" for row in rows]
    return csv_body(lines)


def _cell(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


breakdown: Final = guarded(DATE_PARAMS, _days, _breakdown, PARAMS)
