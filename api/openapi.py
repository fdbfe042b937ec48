"""The OpenAPI 3.0 document of every endpoint, served at ``/api/openapi.json``.

Written by hand so that it states exactly what the handlers send: exact ``required`` lists, closed objects
(``additionalProperties: false``) and every error answer, since clients and fuzzers check answers against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from api.auth import FORGET_USERS, VIEW_ENGAGEMENT_DASHBOARD
from api.schemas import ISO_PATTERN, SCHEMAS, ref

OPENAPI_VERSION: Final = "3.0.3"
JSON: Final = "application/json"


def _json(schema_name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ref(schema_name)}}}
    if headers:
        answer["headers"] = headers
    return answer


_NO_STORE_HEADERS: Final = {
    "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
    "Pragma": {"schema": {"type": "string", "enum": ["no-cache"]}},
}
_RATE_HEADERS: Final = {
    "X-RateLimit-Limit": {"description": "Requests allowed per window.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in this window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {
        "description": "End of the current window, epoch milliseconds.",
        "schema": {"type": "integer"},
    },
}


def _date_param(name: str, *, hourly: bool = False) -> dict[str, Any]:
    covers = (
        "The answer covers the window up to this instant."
        if hourly
        else "The range covers the whole local days (in the service's time zone) of start and end."
    )
    return {
        "name": name,
        "in": "query",
        "required": True,
        "description": "An instant exactly as JavaScript's toISOString writes it (YYYY-MM-DDTHH:mm:ss.sssZ, a real "
        "calendar date). " + covers,
        "schema": {"type": "string", "pattern": ISO_PATTERN},
        "example": "2026-01-01T00:00:00.000Z" if name == "start" else "2026-01-31T23:59:59.999Z",
    }


def _guarded_errors() -> dict[str, Any]:
    return {
        "400": _json("ValidationError", "A date parameter is invalid, repeated or missing."),
        "401": _json("Unauthorized", "No token, an unknown token, or a token of another user."),
        "403": _json("Error", f"The token lacks the permission {VIEW_ENGAGEMENT_DASHBOARD}."),
        "429": _json("Error", "Rate limit exceeded (only when API_RATE_LIMIT is set).", _RATE_HEADERS),
        "500": _json("Error", "Unexpected failure (logged); never a stack trace."),
        "503": _json(
            "Error",
            "Redis cannot be reached; retry shortly.",
            {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
        ),
    }


def route_paths(app: web.Application) -> dict[str, str]:
    """The path of every named route of ``app``, by name (the route's ``operationId``)."""
    return {name: resource.canonical for name, resource in app.router.named_resources().items()}


def _data_operation(summary: str, params: list[dict[str, Any]], ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"userId": [], "authToken": []}],
        "parameters": params,
        "responses": {"200": ok, **_guarded_errors()},
    }


def _choice(name: str, values: list[str], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "enum": values},
    }


def _csv_operation(summary: str, params: list[dict[str, Any]], schema: str, example: str) -> dict[str, Any]:
    """One of our own data operations: JSON, or CSV when ``format=csv``."""
    header = example.split("\r\n", 1)[0]
    return _data_operation(
        summary,
        [*params, _choice("format", ["json", "csv"], f"json (default) or csv (rows {header}).")],
        {
            "description": f"The {schema.lower()}; CSV when format=csv.",
            "headers": _NO_STORE_HEADERS,
            "content": {JSON: {"schema": ref(schema)}, "text/csv": {"schema": {"type": "string"}, "example": example}},
        },
    )


_SEGMENT: Final = {
    "name": "segment",
    "in": "query",
    "required": False,
    "description": "property:value (split at the first colon; the property one of SEGMENT_PROPERTIES): count only "
    "the users active in that segment on the days counted. A value never seen gives zeros; (other) is the values "
    "past SEGMENT_MAX_VALUES.",
    "schema": {"type": "string", "pattern": "^[^:]+:.+$"},
    "example": "platform:ios",
}


def _property(indexed: Sequence[str]) -> dict[str, Any]:
    if not indexed:  # SEGMENT_PROPERTIES=none: an enum may not be empty
        return {
            "name": "property",
            "in": "query",
            "required": True,
            "description": "An indexed property: none is indexed (SEGMENT_PROPERTIES=none), so every value is a 400.",
            "schema": {"type": "string"},
        }
    return {
        "name": "property",
        "in": "query",
        "required": True,
        "description": "An indexed property (one of SEGMENT_PROPERTIES).",
        "schema": {"type": "string", "enum": list(indexed)},
        "example": indexed[0],
    }


def _operations(indexed: Sequence[str]) -> dict[str, dict[str, Any]]:
    dates = [_date_param("start"), _date_param("end")]
    start_only = [_date_param("start", hourly=True)]
    return {
        **{
            name: _data_operation(summary, params, _json(schema, answer, _NO_STORE_HEADERS))
            for name, (summary, params, schema, answer) in {
                "activeUsers": (
                    "Users active on each day of the range (Rocket.Chat's engagement dashboard).",
                    dates,
                    "ActiveUsers",
                    "Days with active users, newest first.",
                ),
                "newUsers": (
                    "Users created per day, the period against the previous one, end's day against the day before.",
                    dates,
                    "NewUsers",
                    "New users per day (at most D days), newest first.",
                ),
                "usersByTimeOfTheDayInAWeek": (
                    "Distinct active users of every local hour overlapping [start, end] (exact instants).",
                    dates,
                    "UsersByTimeOfDay",
                    "Hours with active users, newest date first, hour descending.",
                ),
                "chatBusierHourlyData": (
                    "Distinct active users of each two-hour slot of the 24 hours up to start.",
                    start_only,
                    "HourlyData",
                    "12 slots (hour 22, 20, ... 0) once any has users, else none.",
                ),
                "chatBusierWeeklyData": (
                    "Distinct active users of each of the 8 days day(start) - 7 .. day(start).",
                    start_only,
                    "WeeklyData",
                    "Days with active users, newest first.",
                ),
            }.items()
        },
        "activeUsersSummary": _csv_operation(
            "Exact distinct users of the range and per-day DAU, WAU and MAU.",
            [*dates, _SEGMENT],
            "Summary",
            "date,dau,wau,mau\r\n2026-01-01,3,5,9\r\n",
        ),
        "activeUsersRetention": _csv_operation(
            "Retention: of the users of each cohort period of the range, how many were active in each period after.",
            [
                *dates,
                _choice("period", ["day", "week", "month"], "Local days, ISO weeks or calendar months (default week)."),
                _choice("cohort", ["first", "new", "active"], "Members: first active, created, or active in it."),
                {
                    "name": "periods",
                    "in": "query",
                    "required": False,
                    "description": "Periods reported after each cohort's own (default 12).",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 400},
                },
                _SEGMENT,
            ],
            "Retention",
            "cohort,size,k0,k1\r\n2026-09-28,120,120,64\r\n2026-10-05,31,31,\r\n",
        ),
        "activeUsersStickiness": _csv_operation(
            "Stickiness: how many users were active on exactly 1, 2, ... N of the range's N days.",
            [*dates, _SEGMENT],
            "Stickiness",
            "active_days,users\r\n1,2100\r\n2,1200\r\n",
        ),
        "activeUsersBreakdown": _csv_operation(
            "Breakdown: per value of an indexed property, its distinct users over the range and its DAU each day.",
            [*dates, _property(indexed)],
            "Breakdown",
            "date,value,dau\r\n2026-11-01,web,700\r\n2026-11-01,ios,200\r\n",
        ),
        "forgetUsers": _forget_operation(),
        "healthz": {"summary": "The process answers.", "responses": {"200": _json("Health", "Up.")}},
        "readyz": {
            "summary": "Redis answers and a consumer heartbeat is fresh.",
            "responses": {
                "200": _json("Readiness", "Ready."),
                "503": _json("Readiness", "Not ready; the failing check has ok=false."),
            },
        },
        "metrics": {
            "summary": "Prometheus metrics (requests by route and status, latency histogram).",
            "responses": {
                "200": {
                    "description": "Text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        },
        "dashboard": {
            "summary": "The dashboard page (HTML; sign in with a user id and token).",
            "responses": {
                "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        },
        "dashboardAsset": {
            "summary": "A script, stylesheet or icon of the dashboard, at a content-hashed URL.",
            "parameters": [
                {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "The file.", "content": {"*/*": {"schema": {"type": "string"}}}},
                "404": _json("Error", "No such asset."),
            },
        },
        "root": {
            "summary": "Redirects to /dashboard.",
            "responses": {"302": {"description": "To /dashboard."}},
        },
        "openapi": {
            "summary": "This document.",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.0 document.",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        },
    }


def _forget_operation() -> dict[str, Any]:
    errors = _guarded_errors()
    errors["400"] = _json("Error", 'The body is not {"userIds":[...]} (1 to 1,000 ids of 1 to 128 characters).')
    errors["403"] = _json("Error", f"The token lacks the permission {FORGET_USERS}.")
    errors["413"] = _json("Error", "The body is larger than any valid one.")
    return {
        "summary": "Forget users for good: every answer of every API process leaves them out from now on.",
        "security": [{"userId": [], "authToken": []}],
        "requestBody": {"required": True, "content": {JSON: {"schema": ref("ForgetRequest")}}},
        "responses": {
            "200": _json("Forgotten", "Erased, and visible to every API process.", _NO_STORE_HEADERS),
            **errors,
        },
    }


# The routes that are not GET, by name.
_METHODS: Final = {"forgetUsers": "post"}


def document(paths: Mapping[str, str], indexed: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI document of the API whose routes are ``paths`` (name -> path, see :func:`route_paths`) and
    whose indexed properties (``SEGMENT_PROPERTIES``) are ``indexed``.

    Every route must have an operation here (a new one without raises ``KeyError``, which the tests catch).
    """
    operations = _operations(indexed)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "active-users query API",
            "version": "1.0.0",
            "description": "Rocket.Chat-compatible engagement-dashboard Users endpoints, an exact "
            "distinct-users summary, retention, stickiness and breakdowns by event property.",
        },
        "paths": {
            path: {_METHODS.get(name, "get"): {"operationId": name, **operations[name]}} for name, path in paths.items()
        },
        "components": {
            "securitySchemes": {
                "userId": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-User-Id",
                    "description": "The token's user id.",
                },
                "authToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token", "description": "API token."},
            },
            "schemas": SCHEMAS,
        },
    }
