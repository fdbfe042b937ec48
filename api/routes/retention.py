"""``GET /api/v1/active-users/retention`` and ``GET /api/v1/active-users/stickiness``: who came back, and how
often (our extension). Both validate the dates first, then their own parameters; their answers are kept whole
under the index versions of the days they read (and today, which bounds the periods reported)."""

from __future__ import annotations

import re
from datetime import date
from typing import Final, cast

import orjson
from aiohttp import web

from activeusers.periods import PERIODS, Period
from api.activity import Activity
from api.cohorts import COHORTS, MAX_PERIODS, Cohort
from api.dates import DATE_PARAMS, Param
from api.responses import csv_body, csv_bytes_response, json_bytes_response
from api.retention import CohortRow
from api.routes.breakdown import SEGMENT_PARAM
from api.routes.guarded import Asked, Query, guarded

RETENTION: Final = "/api/v1/active-users/retention"
STICKINESS: Final = "/api/v1/active-users/stickiness"
FORMATS: Final = ("json", "csv")
DEFAULTS: Final = {"period": "week", "cohort": "first", "periods": "12", "format": "json"}
_COUNT: Final = re.compile(r"0|[1-9][0-9]{0,2}")
FORMAT_PARAM: Final = Param("format", False, FORMATS.__contains__)
RETENTION_PARAMS: Final = (
    Param("period", False, PERIODS.__contains__),
    Param("cohort", False, COHORTS.__contains__),
    Param("periods", False, lambda value: _COUNT.fullmatch(value) is not None and int(value) <= MAX_PERIODS),
    FORMAT_PARAM,
    SEGMENT_PARAM,
)


def _asked(query: Query) -> tuple[Period, Cohort, int, bool]:
    """The retention parameters of a valid query, defaults filled in."""
    values = DEFAULTS | query
    return (
        cast(Period, values["period"]),
        cast(Cohort, values["cohort"]),
        int(values["periods"]),
        values["format"] == "csv",
    )


def _retention_days(activity: Activity, query: Query) -> list[date]:
    period, _, periods, _ = _asked(query)
    return activity.retention_plan(query["start"], query["end"], period, periods)[1]


async def _retention(activity: Activity, asked: Asked) -> web.Response:
    """The cohort periods of the range, as JSON or CSV."""
    period, cohort, periods, csv = _asked(asked.query)
    found, days = activity.retention_plan(asked.query["start"], asked.query["end"], period, periods)
    kind = await activity.active_kind(asked.query.get("segment"))

    async def made() -> bytes:
        rows = await activity.retention(found, period, cohort, (days, asked.versions), kind)
        if csv:
            return _retention_csv(rows)
        return orjson.dumps(
            {
                "timezone": activity.settings.activity_timezone,
                "period": period,
                "cohort": cohort,
                "start": found.first.isoformat() if found.first else None,
                "end": found.end.isoformat() if found.end else None,
                "cohorts": [{"start": row.start, "size": row.size, "returned": row.returned} for row in rows],
                "success": True,
            }
        )

    key = ("retention answer", found.first, found.last, period, cohort, periods, csv, tuple(found.reach), kind)
    body = await activity.kept_answer(key, tuple(asked.versions.values()), made)
    return csv_bytes_response(body) if csv else json_bytes_response(body)


def _retention_csv(rows: list[CohortRow]) -> bytes:
    width = max((len(row.returned) for row in rows), default=0)
    lines = [",".join(["cohort", "size", *(f"k{k}" for k in range(width))])]
    for row in rows:
        cells = [str(count) for count in row.returned] + [""] * (width - len(row.returned))
        lines.append(",".join([row.start, str(row.size), *cells]))
    return csv_body(lines)


def _stickiness_days(activity: Activity, query: Query) -> list[date]:
    return activity.stored_days(*activity.requested_days(query["start"], query["end"]))


async def _stickiness(activity: Activity, asked: Asked) -> web.Response:
    """How many users were active on exactly 1, 2, ... of the range's days, as JSON or CSV."""
    days, csv = asked.days, asked.query.get("format") == "csv"
    kind = await activity.active_kind(asked.query.get("segment"))

    async def made() -> bytes:
        distinct, counts = await activity.stickiness(days, asked.versions, kind)
        if csv:
            rows = ["active_days,users", *(f"{k},{users}" for k, users in enumerate(counts, 1))]
            return csv_body(rows)
        return orjson.dumps(
            {
                "timezone": activity.settings.activity_timezone,
                "start": days[0].isoformat() if days else None,
                "end": days[-1].isoformat() if days else None,
                "distinctUsers": distinct,
                "activeDays": counts,
                "success": True,
            }
        )

    key = ("stickiness answer", days[0] if days else None, days[-1] if days else None, csv, kind)
    body = await activity.kept_answer(key, tuple(asked.versions.values()), made)
    return csv_bytes_response(body) if csv else json_bytes_response(body)


retention: Final = guarded(DATE_PARAMS, _retention_days, _retention, RETENTION_PARAMS)
stickiness: Final = guarded(DATE_PARAMS, _stickiness_days, _stickiness, (FORMAT_PARAM, SEGMENT_PARAM))
