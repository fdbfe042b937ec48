"""The data endpoints' one adapter between aiohttp and the questions: :func:`guarded`.

A data route is its query parameters, the days a valid query reads, and its answer. The adapter runs the
contract's checks in order (401, 403, 429, 400), reading the token's record and the days' index versions in one
round trip (both are queued before either is awaited; the versions of a request that then fails its checks are
dropped), and hands the answer an :class:`Asked`. It is the only code of a data route that sees the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date

from aiohttp import web
from aiohttp.typedefs import Handler

from api.activity import Activity
from api.auth import Access, Credentials
from api.dates import Param, validated
from api.errors import ValidationError
from api.indexreads import Versions
from api.responses import EXTRA_HEADERS
from api.state import ACCESS, ACTIVITY

Query = dict[str, str]


@dataclass(frozen=True, slots=True)
class Asked:
    """A data request that passed its checks: its validated parameters, the days it reads and their versions."""

    query: Query
    days: list[date]
    versions: Versions


DaysOf = Callable[[Activity, Query], list[date]]
Answer = Callable[[Activity, Asked], Awaitable[web.Response]]


def guarded(params: Sequence[Param], days_of: DaysOf, answer: Answer, later: Sequence[Param] = ()) -> Handler:
    """The handler of a data route: checks, then ``answer`` with the days ``days_of`` names for the query.
    ``later``: parameters checked once ``params`` passed (our endpoints check theirs after the dates)."""

    async def handle(request: web.Request) -> web.Response:
        access, activity = request.app[ACCESS], request.app[ACTIVITY]
        sent = access.credentials(request.headers)
        try:
            query = validated(request.rel_url.raw_query_string, params)
            if later:
                query |= validated(request.rel_url.raw_query_string, later)
            _check_indexed(activity, query)
        except ValidationError:
            await _admit(request, access, sent)
            raise
        if sent.lookup is None:  # no credentials: the 401, without reading anything
            await _admit(request, access, sent)
        days = days_of(activity, query)
        versions = activity.versions_soon(days)
        await _admit(request, access, sent)
        return await answer(activity, Asked(query, days, await versions))

    return handle


def _check_indexed(activity: Activity, query: Query) -> None:
    """A ``property`` or ``segment`` parameter must name a property this deployment indexes (a setting, so
    checked here rather than by the parameter's pure rule)."""
    if "property" in query and query["property"] not in activity.settings.indexed_properties:
        raise ValidationError("property", missing=False)
    if "segment" in query and not activity.indexes(query["segment"]):
        raise ValidationError("segment", missing=False)


async def _admit(request: web.Request, access: Access, sent: Credentials) -> None:
    granted = await access.admit(sent)
    # Every answer of an admitted request carries its rate-limit state, errors found after admission included.
    request[EXTRA_HEADERS] = granted.headers
