"""``GET /api/v1/engagement-dashboard/users/active-users``: Rocket.Chat's endpoint, byte for byte."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from api.dates import DATE_PARAMS
from api.dayreads import day_fragments
from api.responses import json_bytes_response
from api.routes.common import authorized_query, requested_days, stored_days
from api.state import DAY_CACHE, READER

PATH: Final = "/api/v1/engagement-dashboard/users/active-users"


async def active_users(request: web.Request) -> web.Response:
    """Users active on each day of the range that had any, newest day first."""
    query = await authorized_query(request, DATE_PARAMS)
    first, last = requested_days(request, query["start"], query["end"])
    days = stored_days(request, first, last)
    fragments = await day_fragments(request.app[READER], request.app[DAY_CACHE], days)
    # The days' encoded elements are joined as they are: the same bytes orjson writes for the whole answer, copied
    # once (a single join over the pieces and their separators).
    pieces = [b'{"month":[']
    for fragment in fragments:
        pieces += (fragment, b",")
    if fragments:
        pieces.pop()
    pieces.append(b'],"success":true}')
    return json_bytes_response(b"".join(pieces))
