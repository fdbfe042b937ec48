"""The one mapping from errors to HTTP answers, and malformed requests over the wire."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web

from activeusers.errors import StoreUnavailable
from api.errors import Forbidden, RateLimited, Unauthorized, ValidationError, error_response


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            Unauthorized(),
            401,
            b'{"success":false,"error":"You must be logged in to do this.","status":"error",'
            b'"message":"You must be logged in to do this."}',
        ),
        (
            Forbidden(),
            403,
            b'{"success":false,"error":"User does not have the permissions required for this action '
            b'[error-unauthorized]"}',
        ),
        (
            ValidationError("end", missing=False),
            400,
            b'{"success":false,"error":"Match error: Failed Match.Where validation in field end"}',
        ),
        (
            ValidationError("start", missing=True),
            400,
            b'{"success":false,"error":"Match error: Missing key \'start\'"}',
        ),
        (
            RateLimited(42, {"X-RateLimit-Limit": "10"}),
            429,
            b'{"success":false,"error":"Error, too many requests. Please slow down. You must wait 42 seconds '
            b'before trying this endpoint again. [error-too-many-requests]"}',
        ),
        (
            StoreUnavailable("Redis is unreachable: Error 111 connecting to 10.0.0.1:6379"),
            503,
            b'{"success":false,"error":"Service unavailable: the data store cannot be reached. Try again shortly."}',
        ),
        (web.HTTPNotFound(), 404, b'{"success":false,"error":"Not Found"}'),
        (web.HTTPRequestEntityTooLarge(1024, 4096), 413, b'{"success":false,"error":"Request Entity Too Large"}'),
        (RuntimeError("secret internals"), 500, b'{"success":false,"error":"Internal server error"}'),
    ],
)
def test_error_mapping(error, status, body):
    response = error_response(error)
    assert (response.status, response.body) == (status, body)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_405_keeps_allow():
    response = error_response(web.HTTPMethodNotAllowed("POST", ["GET"]))
    assert response.status == 405
    assert response.headers["Allow"] == "GET"
    assert orjson.loads(response.body) == {"success": False, "error": "Method Not Allowed"}


async def test_unknown_route_and_method_are_json(api, admin):
    missing = await api.get("/api/v1/nope")
    assert (missing.status, missing.body) == (404, b'{"success":false,"error":"Not Found"}')
    assert missing.headers["Content-Type"] == "application/json"
    post = await api.client.post("/api/v1/engagement-dashboard/users/active-users", data=b"x" * 10, headers=admin)
    assert post.status == 405
    assert await post.read() == b'{"success":false,"error":"Method Not Allowed"}'
    assert post.headers["Allow"] == "GET"


async def test_malformed_requests_are_4xx(api, admin):
    path = "/api/v1/engagement-dashboard/users/active-users"
    huge_header = await api.client.get(path, headers={**admin, "X-Junk": "j" * 20_000})
    assert 400 <= huge_header.status < 500
    huge_query = await api.client.get(path + "?start=" + "a" * 20_000, headers=admin)
    assert 400 <= huge_query.status < 500
    query = "?start=2026-03-01T00:00:00.000Z&end=2026-03-02T00:00:00.000Z"
    big_body = await api.client.request("GET", path + query, data=b"x" * 100_000, headers=admin)
    assert big_body.status == 413
    assert await big_body.read() == b'{"success":false,"error":"Request Entity Too Large"}'
    for query in ("%", "%%%", "=", "&", "start=%C0%AF&end=%00", "start=\\x00"):
        answer = await api.client.get(f"{path}?{query}", headers=admin)
        assert answer.status == 400, query
