"""What the data endpoints share: the guarded, validated query and the days it can cost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Literal

from aiohttp import web

from activeusers.days import clip_days
from api.auth import guard
from api.dates import Param, day_range, query_pairs, validate_query
from api.state import SETTINGS, now_ms


async def authorized_query(request: web.Request, params: Sequence[Param]) -> dict[str, str]:
    """Run the checks in the contract's order (401, 403, 429, 400) and return the validated parameters."""
    await guard(request)
    return validate_query(query_pairs(request.rel_url.raw_query_string), params)


def requested_days(request: web.Request, start: str, end: str) -> tuple[date, date]:
    """The local days of the range, in the configured zone (possibly reversed, possibly far outside the data)."""
    return day_range(start, end, request.app[SETTINGS].zone)


Store = Literal["days", "hours"]


def stored_days(request: web.Request, first: date, last: date, store: Store = "days") -> list[date]:
    """The days of ``first..last`` that can hold data now in ``store``: inside its retention, not in the future;
    oldest first. ``days``: the index's day and new-user bitmaps (``RETENTION_DAYS``); ``hours``: its hour
    bitmaps (``HOUR_RETENTION_DAYS``)."""
    settings = request.app[SETTINGS]
    retention = settings.retention_days if store == "days" else settings.hour_retention_days
    return clip_days(first, last, now_ms(request.app), settings.zone, retention)
