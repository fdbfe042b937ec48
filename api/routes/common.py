"""What the data endpoints share: the guarded, validated query and the days it can cost."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Literal

from aiohttp import web

from activeusers.days import clip_days
from api.auth import credentials, guard
from api.dates import Param, day_range, validated
from api.errors import ValidationError
from api.state import READER, SETTINGS, now_ms


async def authorized_query(
    request: web.Request, params: Sequence[Param], days_of: Callable[[dict[str, str]], list[date]]
) -> tuple[dict[str, str], list[date], dict[date, str | None]]:
    """Run the checks in the contract's order (401, 403, 429, 400) and return the validated parameters, the days
    ``days_of`` names for them and those days' index versions (the endpoint's first read of the index).

    The token's record and those versions are read in one round trip: both are queued before either is awaited
    (the versions of a request that then fails its checks are simply dropped). Validation runs first but its
    error is raised only once the request passed the other checks."""
    sent = credentials(request)
    try:
        query = validated(request.rel_url.raw_query_string, params)
    except ValidationError:
        await guard(request, sent=sent)
        raise
    if sent.lookup is None:  # no credentials: the 401, without reading anything
        await guard(request, sent=sent)
    days = days_of(query)
    versions = request.app[READER].day_versions_soon(days)
    await guard(request, sent=sent)
    return query, days, await versions


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
