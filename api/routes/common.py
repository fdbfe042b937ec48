"""What the data endpoints share: the guarded, validated query and the days it can cost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

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


def stored_days(request: web.Request, first: date, last: date, *, hours: bool = False) -> list[date]:
    """The days of ``first..last`` that can hold data now: inside retention, not in the future; oldest first.

    ``hours``: the days whose hour sets can hold data (``HOUR_RETENTION_DAYS`` instead of ``RETENTION_DAYS``).
    """
    settings = request.app[SETTINGS]
    retention = settings.hour_retention_days if hours else settings.retention_days
    return clip_days(first, last, now_ms(request.app), settings.zone, retention)
