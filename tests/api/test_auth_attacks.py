"""Attacks on authentication: every one ends in Rocket.Chat's exact 401/403 body (or, for bytes the HTTP parser
refuses, aiohttp's plain 400), never a 5xx; tokens and user ids never reach the log or the metrics.

Headers the aiohttp client cannot send (non-ASCII bytes, control bytes, a megabyte line, repeated names) go
through a raw socket to the same test server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from activeusers.keys import KeySchema
from activeusers.logs import JsonFormatter
from activeusers.settings import Settings
from api.app import create_app
from api.auth import VIEW_ENGAGEMENT_DASHBOARD
from api.httplog import MALFORMED
from api.state import TOKENS
from api.tokens import hash_token

PATH = "/api/v1/engagement-dashboard/users/active-users"
SUMMARY = "/api/v1/active-users/summary"
FORGET = "/api/v1/active-users/forget"
# The operational endpoints are public by design; every other route of the app is a data route and must demand a
# token. The data routes are read from the router, so a route added without authentication fails these tests.
PUBLIC = frozenset(
    {"/healthz", "/readyz", "/metrics", "/api/openapi.json", "/dashboard", "/", "/dashboard/assets/{path}"}
)
# Each data route with its method (GET, or POST for forget; HEAD follows GET).
DATA_ROUTES = sorted(
    {
        (r.method, r.resource.canonical)
        for r in create_app(Settings()).router.routes()
        if r.resource is not None and r.resource.canonical not in PUBLIC and r.method != "HEAD"
    }
)
QUERY = "?start=2026-03-01T00:00:00.000Z&end=2026-03-15T00:00:00.000Z"
UNAUTHORIZED = (
    b'{"success":false,"error":"You must be logged in to do this.","status":"error",'
    b'"message":"You must be logged in to do this."}'
)
FORBIDDEN = (
    b'{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}'
)
ADMIN_ID = "admin-user-1"
OTHER = "other-user-2"

# Injection-shaped values: SQL, Mongo/JSON operators, templates, paths, globs, encoded CR/LF, numbers, nothing.
JUNK = (
    "' OR '1'='1",
    "admin' --",
    "1; DROP TABLE users",
    '{"$ne":null}',
    '{"$gt":""}',
    '{"$where":"1==1"}',
    "[]",
    "{}",
    "null",
    "undefined",
    "true",
    "0",
    "-1",
    "*",
    "?",
    "%",
    "%00",
    "%0d%0aX-User-Id: admin",
    "\\",
    "../../etc/passwd",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "Bearer x",
    "a" * 4096,
)
# Sent as raw header bytes: valid UTF-8 beyond ASCII, Latin-1, invalid UTF-8, a UTF-8-encoded surrogate.
NON_ASCII = (
    "ü".encode(),
    "用户".encode(),
    "🔑".encode(),
    "\u202eevil".encode(),
    b"\xfc",
    b"\xff\xfe\xfd",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of every logger, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    # The service turns the access log down (activeusers.logs.configure); here it is captured too.
    for name in ("aiohttp.access", "aiohttp.server", "api.http"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """The captured records as the service writes them (JSON lines, tracebacks included) plus their raw form."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) + "\n" + repr(vars(record)) for record in caplog.records)


def assert_secrets_absent(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        assert hash_token(secret) not in text


async def raw_request(api, header_lines: bytes, path: str = PATH + QUERY) -> bytes:
    """Send one request with exactly these header bytes; the whole answer (empty if the server reset us)."""
    reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    try:
        writer.write(head + header_lines + b"\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def split(answer: bytes) -> tuple[int, bytes, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


async def assert_401(answer) -> None:
    assert answer.status == 401
    assert answer.body == UNAUTHORIZED
    assert answer.headers["Content-Type"] == "application/json"


def assert_raw_401(answer: bytes) -> None:
    status, head, body = split(answer)
    assert (status, body) == (401, UNAUTHORIZED)
    assert b"Content-Type: application/json\r\n" in head


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-User-Id": "admin-user-1"},
        {"X-Auth-Token": "whatever"},
        {"X-User-Id": "", "X-Auth-Token": ""},
        {"X-User-Id": "   ", "X-Auth-Token": "   "},
        {"X-Userid": "admin-user-1", "X-Token": "x"},
        {"Authorization": "Bearer x"},
        {"Cookie": "rc_uid=admin-user-1; rc_token=x"},
    ],
    ids=["none", "id-only", "token-only", "empty", "blank", "misspelled", "bearer", "cookie"],
)
async def test_missing_or_empty_credentials(api, headers):
    assert len(DATA_ROUTES) >= 7 and {("GET", PATH), ("POST", FORGET)} <= set(DATA_ROUTES)
    for method, path in DATA_ROUTES:
        await assert_401(await api.request(method, path + QUERY, headers))


async def test_empty_value_next_to_a_valid_one(api, admin):
    await assert_401(await api.get(PATH + QUERY, {**admin, "X-Auth-Token": ""}))
    await assert_401(await api.get(PATH + QUERY, {**admin, "X-User-Id": ""}))


@pytest.mark.parametrize(
    ("user_header", "token_header"),
    [("x-user-id", "x-auth-token"), ("X-USER-ID", "X-AUTH-TOKEN"), ("x-UsEr-Id", "X-aUtH-tOkEn")],
)
async def test_header_names_are_case_insensitive(api, admin, user_header, token_header):
    headers = {user_header: admin["X-User-Id"], token_header: admin["X-Auth-Token"]}
    answer = await api.get(PATH + QUERY, headers)
    assert answer.status == 200


async def test_header_values_are_case_sensitive(api, admin):
    token, user = admin["X-Auth-Token"], admin["X-User-Id"]
    for changed in (token.upper(), token.lower(), token.swapcase()):
        await assert_401(await api.get(PATH + QUERY, {"X-User-Id": user, "X-Auth-Token": changed}))
    await assert_401(await api.get(PATH + QUERY, {"X-User-Id": user.upper(), "X-Auth-Token": token}))


async def test_near_misses_of_a_valid_token(api, admin):
    token, user = admin["X-Auth-Token"], admin["X-User-Id"]
    for changed in (token[:-1], token + "A", "A" + token, token[1:], token[::-1], hash_token(token), token + "=="):
        await assert_401(await api.get(PATH + QUERY, {"X-User-Id": user, "X-Auth-Token": changed}))
    for changed in (user + " x", user[:-1], user + "\t1", f"{user},{user}"):
        await assert_401(await api.get(PATH + QUERY, {"X-User-Id": changed, "X-Auth-Token": token}))


async def test_another_users_token(api, admin):
    other = await api.token(OTHER)
    # Both tokens are valid for their own users; swapping either half fails.
    assert (await api.get(PATH + QUERY, other)).status == 200
    await assert_401(await api.get(PATH + QUERY, {"X-User-Id": ADMIN_ID, "X-Auth-Token": other["X-Auth-Token"]}))
    await assert_401(await api.get(PATH + QUERY, {"X-User-Id": OTHER, "X-Auth-Token": admin["X-Auth-Token"]}))
    for method, path in DATA_ROUTES:
        headers = {"X-User-Id": OTHER, "X-Auth-Token": admin["X-Auth-Token"]}
        await assert_401(await api.request(method, path + QUERY, headers))


async def test_revoked_token(api, admin):
    store = api.client.app[TOKENS]
    assert (await api.get(PATH + QUERY, admin)).status == 200
    (record,) = [r for r in await store.all() if r.user_id == ADMIN_ID]
    assert await store.revoke(record.id)
    for method, path in DATA_ROUTES:
        await assert_401(await api.request(method, path + QUERY, admin))


async def test_every_token_of_a_revoked_user(api):
    first, second = await api.token(OTHER), await api.token(OTHER)
    assert await api.client.app[TOKENS].revoke_user(OTHER) == 2
    for headers in (first, second):
        await assert_401(await api.get(PATH + QUERY, headers))


async def test_token_without_the_permission_is_403_even_with_bad_dates(api):
    headers = await api.token("viewer-3", permissions=())
    queries = (QUERY, "?start=bad", "?end=bad&start=bad&format=xml", "")
    for method, path in DATA_ROUTES:
        for query in queries:
            answer = await api.request(method, path + query, headers)
            assert (answer.status, answer.body) == (403, FORBIDDEN)


@pytest.mark.parametrize("junk", JUNK)
async def test_injection_shaped_values(api, admin, junk):
    for headers in (
        {"X-User-Id": junk, "X-Auth-Token": junk},
        {"X-User-Id": ADMIN_ID, "X-Auth-Token": junk},
        {"X-User-Id": junk, "X-Auth-Token": admin["X-Auth-Token"]},
    ):
        for method, path in DATA_ROUTES:
            await assert_401(await api.request(method, path + QUERY, headers))


async def test_non_ascii_values(api, admin):
    token = admin["X-Auth-Token"].encode()
    for value in NON_ASCII:
        for lines in (
            b"X-User-Id: " + value + b"\r\nX-Auth-Token: " + value + b"\r\n",
            b"X-User-Id: " + value + b"\r\nX-Auth-Token: " + token + b"\r\n",
            b"X-User-Id: admin-user-1\r\nX-Auth-Token: " + value + b"\r\n",
            b"X-User-Id: admin-user-1\r\nX-Auth-Token: " + token + value + b"\r\n",
        ):
            assert_raw_401(await raw_request(api, lines))


async def test_a_non_ascii_user_id_authenticates_byte_for_byte(api):
    headers = await api.token("usér-ü")
    token = headers["X-Auth-Token"].encode()
    ok = await raw_request(api, b"X-User-Id: " + "usér-ü".encode() + b"\r\nX-Auth-Token: " + token + b"\r\n")
    assert split(ok)[0] == 200
    # The same text in Latin-1 is other bytes, so another user id.
    assert_raw_401(
        await raw_request(api, b"X-User-Id: " + "usér-ü".encode("latin-1") + b"\r\nX-Auth-Token: " + token + b"\r\n")
    )


async def test_repeated_credentials_headers(api, admin):
    user, token = admin["X-User-Id"].encode(), admin["X-Auth-Token"].encode()
    # Rocket.Chat (Node) joins repeated headers with ", ", which matches nothing; we refuse them the same way,
    # also when both copies are the valid value.
    for lines in (
        b"X-User-Id: " + user + b"\r\nX-Auth-Token: " + token + b"\r\nX-Auth-Token: " + token + b"\r\n",
        b"X-User-Id: " + user + b"\r\nX-Auth-Token: junk\r\nX-Auth-Token: " + token + b"\r\n",
        b"X-User-Id: " + user + b"\r\nX-Auth-Token: " + token + b"\r\nx-auth-token: junk\r\n",
        b"X-User-Id: " + user + b"\r\nX-User-Id: " + user + b"\r\nX-Auth-Token: " + token + b"\r\n",
        b"X-User-Id: someone\r\nX-User-Id: " + user + b"\r\nX-Auth-Token: " + token + b"\r\n",
    ):
        assert_raw_401(await raw_request(api, lines))
    assert split(await raw_request(api, b"X-User-Id: " + user + b"\r\nX-Auth-Token: " + token + b"\r\n"))[0] == 200


@pytest.mark.parametrize("size", [64, 1024, 8000])
async def test_long_values_the_server_accepts_get_the_json_401(api, admin, size):
    # aiohttp accepts a header line (name included) up to 8190 bytes: such values reach the app.
    long = b"A" * size
    assert_raw_401(await raw_request(api, b"X-User-Id: admin-user-1\r\nX-Auth-Token: " + long + b"\r\n"))
    assert_raw_401(await raw_request(api, b"X-User-Id: " + long + b"\r\nX-Auth-Token: " + long + b"\r\n"))


@pytest.mark.parametrize("size", [8191, 64 * 1024, 1024 * 1024])
async def test_oversized_values_are_refused_by_the_parser(api, admin, captured, size):
    token = admin["X-Auth-Token"]
    # The token leads the oversized value: the parser's error quotes the first bytes of the line.
    long = token.encode() + b"A" * size
    answer = await raw_request(api, b"X-User-Id: admin-user-1\r\nX-Auth-Token: " + long + b"\r\n")
    # A 400 (aiohttp's, plain text), or a reset when the server closed while the megabyte was still arriving.
    if answer:
        status, head, _ = split(answer)
        assert status == 400
        assert b"Content-Type: text/plain" in head
    # The server goes on answering, and it logged one summary line without the token.
    assert (await api.get(PATH + QUERY, admin)).status == 200
    assert any(r.getMessage() == MALFORMED and r.levelno == logging.INFO for r in captured.records)
    assert_secrets_absent(logged_text(captured), token)


async def test_too_many_headers_are_refused_by_the_parser(api, admin):
    lines = b"".join(b"X-Pad-%d: x\r\n" % n for n in range(200))
    status, _, _ = split(await raw_request(api, lines + b"X-User-Id: admin-user-1\r\nX-Auth-Token: x\r\n"))
    assert status == 400
    assert (await api.get(PATH + QUERY, admin)).status == 200


@pytest.mark.parametrize("bad", [b"\x00", b"\x01", b"\x7f", b"\r", b"\x1b[31m"])
async def test_control_bytes_are_refused_by_the_parser_and_not_logged(api, admin, captured, bad):
    token = admin["X-Auth-Token"]
    answer = await raw_request(api, b"X-User-Id: admin-user-1\r\nX-Auth-Token: " + token.encode() + bad + b"x\r\n")
    status, _, _ = split(answer)
    assert 400 <= status < 500
    text = logged_text(captured)
    assert_secrets_absent(text, token)
    assert "Traceback" not in text


async def test_tokens_never_reach_logs_or_metrics(api, admin, captured):
    other = await api.token(OTHER)
    viewer = await api.token("viewer-3", permissions=())
    secrets = [h["X-Auth-Token"] for h in (admin, other, viewer)]
    user_ids = [ADMIN_ID, OTHER, "viewer-3"]
    # Valid requests, every error status of the data endpoints, and a few attacks.
    asked = [(method, path + query) for method, path in DATA_ROUTES for query in (QUERY, "?start=x", "")]
    for method, path in (*asked, ("GET", SUMMARY + QUERY + "&format=csv")):
        for headers in (admin, other, viewer, {"X-User-Id": OTHER, "X-Auth-Token": secrets[0]}, {}):
            assert (await api.request(method, path, headers)).status < 500
    for junk in JUNK[:8]:
        await api.get(PATH + QUERY, {"X-User-Id": ADMIN_ID, "X-Auth-Token": junk})
    await raw_request(api, b"X-User-Id: admin-user-1\r\nX-Auth-Token: " + secrets[0].encode() + b"\x00\r\n")
    await raw_request(api, b"X-Auth-Token: " + secrets[1].encode() * 300 + b"\r\n")
    assert captured.records  # the capture sees the service's logging at all
    logs = logged_text(captured)
    assert_secrets_absent(logs, *secrets)
    for user_id in user_ids:
        assert user_id not in logs
    metrics = (await api.get("/metrics")).body.decode()
    assert "activeusers_api_requests_total" in metrics
    assert_secrets_absent(metrics, *secrets)
    for value in (*user_ids, *JUNK[:8]):
        assert value not in metrics


async def test_token_records_hold_no_token(api, admin, redis_client):
    stored = redis_client.hgetall(KeySchema(api.settings.redis_key_prefix, "UTC").tokens())
    token = admin["X-Auth-Token"]
    assert list(stored) == [hash_token(token)]
    assert token not in repr(stored)
    assert VIEW_ENGAGEMENT_DASHBOARD in next(iter(stored.values()))
