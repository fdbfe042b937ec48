"""``GET /api/v1/engagement-dashboard/users/active-users``: Rocket.Chat's endpoint, byte for byte."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from api.dates import DATE_PARAMS
from api.responses import json_response
from api.routes.common import authorized_query, requested_days, stored_days
from api.state import READER

PATH: Final = "/api/v1/engagement-dashboard/users/active-users"


async def active_users(request: web.Request) -> web.Response:
    """Users active on each day of the range that had any, newest day first."""
    query = await authorized_query(request, DATE_PARAMS)
    first, last = requested_days(request, query["start"], query["end"])
    days = stored_days(request, first, last)
    found = await request.app[READER].active_users(days)
    month = [
        # Sorted ids: the contract leaves the order open, and a stable order makes answers comparable.
        {"usersList": sorted(users), "users": len(users), "day": day.day, "month": day.month, "year": day.year}
        for day in reversed(days)
        if (users := found.get(day))
    ]
    return json_response({"month": month, "success": True})
