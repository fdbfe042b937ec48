"""Signing in with Rocket.Chat (``ROCKETCHAT_URL``): its users' tokens checked against a stand-in Rocket.Chat
(``tests/rocketchat_standin.py``, answering as Rocket.Chat's source does), end to end through the real API app on
the real Redis, over plain HTTP and over TLS with the test bed's CA."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from activeusers.logs import JsonFormatter
from activeusers.settings import Settings
from api.auth import AUTH_SOURCE, ROCKETCHAT_PERMISSIONS, VIEW_ENGAGEMENT_DASHBOARD
from api.errors import RocketChatUnreachable, Unauthorized
from api.rocketchat import RocketChat
from tests.support.rocketchat_standin import StandIn, serve

PATH = "/api/v1/engagement-dashboard/users/active-users?start=2026-03-01T00:00:00.000Z&end=2026-03-15T00:00:00.000Z"
FORGET = "/api/v1/active-users/forget"
SUMMARY = "/api/v1/active-users/summary?start=2026-03-01T00:00:00.000Z&end=2026-03-15T00:00:00.000Z"
LOGIN = (
    b'{"success":false,"error":"You must be logged in to do this.","status":"error",'
    b'"message":"You must be logged in to do this."}'
)
FORBIDDEN = (
    b'{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}'
)
UNREACHABLE = b'{"success":false,"error":"Rocket.Chat could not be reached to check the token"}'
TOKEN = "rc-login-token-0123456789abcdefghijklmnopqrstu"
ALICE = {"X-User-Id": "alice-rc-id", "X-Auth-Token": TOKEN}


def standin() -> StandIn:
    """Alice is an admin; Bob a plain user; the dashboard permission goes to admins (as Rocket.Chat ships it)."""
    rc = StandIn()
    rc.add_user("alice-rc-id", TOKEN, ["user", "admin"])
    rc.add_user("bob-rc-id", "bob-token", ["user"])
    rc.set_permission("view-logs", ["admin"])
    rc.set_permission(VIEW_ENGAGEMENT_DASHBOARD, ["admin"])
    rc.set_permission("forget-users", ["admin", "user"])
    return rc


@pytest.fixture
async def rocketchat() -> AsyncIterator[tuple[StandIn, str]]:
    rc = standin()
    runner, url = await serve(rc)
    yield rc, url
    await runner.cleanup()


@pytest.fixture
def free_url() -> str:
    """A URL nothing listens on (a closed port): Rocket.Chat down."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def client_of(url: str, **overrides: Any) -> RocketChat:
    client = RocketChat(Settings(rocketchat_url=url, **overrides), ROCKETCHAT_PERMISSIONS)
    await client.open()
    return client


# --- the client alone ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pre_8_0", [True, False])
async def test_a_good_token_has_the_permission_and_a_wrong_one_is_refused(rocketchat, pre_8_0):
    rc, url = rocketchat
    rc.pre_8_0 = pre_8_0
    client = await client_of(url)
    try:
        assert await client.permissions("alice-rc-id", TOKEN) == (VIEW_ENGAGEMENT_DASHBOARD,)
        assert await client.permissions("bob-rc-id", "bob-token") == ()
        for user_id, token in (("alice-rc-id", "wrong"), ("bob-rc-id", TOKEN), ("nobody", "x")):
            with pytest.raises(Unauthorized):
                await client.permissions(user_id, token)
    finally:
        await client.aclose()


async def test_rocketchat_roles_never_grant_our_own_permissions(rocketchat):
    # forget-users is held by every role at the stand-in; Rocket.Chat roles still only map to the dashboard's.
    _, url = rocketchat
    client = await client_of(url)
    try:
        assert await client.permissions("bob-rc-id", "bob-token") == ()
        assert "forget-users" not in await client.permissions("alice-rc-id", TOKEN)
    finally:
        await client.aclose()


async def test_the_permission_map_is_refreshed_with_updated_since(rocketchat):
    rc, url = rocketchat
    client = await client_of(url, rocketchat_auth_ttl_s=0.2)
    try:
        assert await client.permissions("bob-rc-id", "bob-token") == ()
        rc.set_permission(VIEW_ENGAGEMENT_DASHBOARD, ["admin", "user"])  # granted to a second role
        assert await client.permissions("bob-rc-id", "bob-token") == ()  # the map is kept for the TTL
        await asyncio.sleep(0.3)
        assert await client.permissions("bob-rc-id", "bob-token") == (VIEW_ENGAGEMENT_DASHBOARD,)
        rc.remove_permission(VIEW_ENGAGEMENT_DASHBOARD)
        await asyncio.sleep(0.3)
        assert await client.permissions("alice-rc-id", TOKEN) == ()
        first, *later = rc.list_calls
        assert first is None and later and all(later)  # the whole list once, then only what changed
        assert later == sorted(set(later))  # each from the newest change seen before
    finally:
        await client.aclose()


async def test_answers_are_kept_for_the_ttl_and_refusals_briefly(rocketchat, monkeypatch):
    rc, url = rocketchat
    now = [1000.0]
    client = RocketChat(Settings(rocketchat_url=url), ROCKETCHAT_PERMISSIONS, clock=lambda: now[0])
    await client.open()
    try:
        assert await client.permissions("alice-rc-id", TOKEN)
        rc.revoke("alice-rc-id", TOKEN)
        now[0] += 59
        assert await client.permissions("alice-rc-id", TOKEN)  # still within ROCKETCHAT_AUTH_TTL (60 s)
        assert rc.me_calls == 1
        now[0] += 2
        with pytest.raises(Unauthorized):
            await client.permissions("alice-rc-id", TOKEN)
        rc.add_user("alice-rc-id", TOKEN, ["admin"])  # logged in again with the same token
        with pytest.raises(Unauthorized):
            await client.permissions("alice-rc-id", TOKEN)  # the refusal is kept...
        now[0] += 2.5
        assert await client.permissions("alice-rc-id", TOKEN)  # ...for a few seconds at most
        assert rc.me_calls == 3
    finally:
        await client.aclose()


@pytest.mark.parametrize("status", [500, 502, 503, 404, 429])
async def test_a_failing_rocketchat_is_unreachable_never_a_pass(rocketchat, status):
    rc, url = rocketchat
    rc.fail_status = status
    client = await client_of(url)
    try:
        with pytest.raises(RocketChatUnreachable):
            await client.permissions("alice-rc-id", TOKEN)
        rc.fail_status = None
        assert await client.permissions("alice-rc-id", TOKEN)  # a failure is not kept
    finally:
        await client.aclose()


async def test_a_slow_rocketchat_times_out(rocketchat):
    rc, url = rocketchat
    rc.delay_s = 3.0
    client = await client_of(url, rocketchat_timeout_s=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(RocketChatUnreachable):
            await client.permissions("alice-rc-id", TOKEN)
        assert time.monotonic() - started < 2.0
        assert await client.unreachable() is not None
    finally:
        await client.aclose()


async def test_a_hundred_concurrent_requests_with_one_new_token_make_one_me_call(rocketchat):
    rc, url = rocketchat
    rc.delay_s = 0.1
    client = await client_of(url)
    try:
        answers = await asyncio.gather(*(client.permissions("alice-rc-id", TOKEN) for _ in range(100)))
        assert answers == [(VIEW_ENGAGEMENT_DASHBOARD,)] * 100
        assert rc.me_calls == 1 and len(rc.list_calls) == 1
    finally:
        await client.aclose()


# --- TLS -------------------------------------------------------------------------------------------------------


@pytest.fixture
def test_bed_tls(secure_env: dict[str, str]) -> tuple[ssl.SSLContext, str]:
    """The server side of the test bed's certificate (for 127.0.0.1) and the CA file that signed it."""
    folder = Path(secure_env["REDIS_SSL_CA_FILE"]).parent
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "server.pem", folder / "server-key.pem")
    return context, str(folder / "ca.pem")


async def test_tls_is_verified_with_the_ca_file(test_bed_tls):
    context, ca_file = test_bed_tls
    runner, url = await serve(standin(), context)
    try:
        assert url.startswith("https://")
        trusting = await client_of(url, rocketchat_ca_file=ca_file)
        system = await client_of(url)  # the system's CAs do not know the test bed's
        try:
            assert await trusting.permissions("alice-rc-id", TOKEN) == (VIEW_ENGAGEMENT_DASHBOARD,)
            with pytest.raises(RocketChatUnreachable) as caught:
                await system.permissions("alice-rc-id", TOKEN)
            assert "certificate" in caught.value.reason.lower()
        finally:
            await trusting.aclose()
            await system.aclose()
    finally:
        await runner.cleanup()


# --- end to end: the API on the real Redis ---------------------------------------------------------------------


MakeApi = Callable[..., Awaitable[Any]]


async def test_end_to_end_good_wrong_forbidden_and_the_source_header(make_api: MakeApi, rocketchat):
    rc, url = rocketchat
    api = await make_api(rocketchat_url=url)
    ours = await api.token("ours-1")
    good = await api.get(PATH, ALICE)
    mine = await api.get(PATH, ours)
    assert (good.status, good.body) == (mine.status, mine.body) == (200, mine.body)
    assert (good.headers[AUTH_SOURCE], mine.headers[AUTH_SOURCE]) == ("rocketchat", "active-users")
    assert rc.me_calls == 1
    wrong = await api.get(PATH, {**ALICE, "X-Auth-Token": "wrong"})
    assert (wrong.status, wrong.body) == (401, LOGIN) and AUTH_SOURCE not in wrong.headers
    bob = await api.get(SUMMARY, {"X-User-Id": "bob-rc-id", "X-Auth-Token": "bob-token"})
    assert (bob.status, bob.body) == (403, FORBIDDEN)
    rc.pre_8_0 = False  # Rocket.Chat 8's 401 body: ours stays the same
    assert (await api.get(PATH, {**ALICE, "X-Auth-Token": "other"})).body == LOGIN


async def test_end_to_end_a_rocketchat_token_never_forgets_users(make_api: MakeApi, rocketchat):
    # Alice's roles hold forget-users at the stand-in: still the 403, and nothing is erased.
    _, url = rocketchat
    api = await make_api(rocketchat_url=url)
    answer = await api.client.post(FORGET, json={"userIds": ["bob-rc-id"]}, headers=ALICE)
    assert (answer.status, await answer.read()) == (403, FORBIDDEN)
    assert (await api.get(PATH, ALICE)).status == 200


async def test_end_to_end_a_revoked_token_is_refused_once_the_ttl_passed(make_api: MakeApi, rocketchat):
    rc, url = rocketchat
    api = await make_api(rocketchat_url=url, rocketchat_auth_ttl_s=0.5)
    assert (await api.get(PATH, ALICE)).status == 200
    rc.revoke("alice-rc-id", TOKEN)
    assert (await api.get(PATH, ALICE)).status == 200
    await asyncio.sleep(0.6)
    assert (await api.get(PATH, ALICE)).body == LOGIN


async def test_end_to_end_rocketchat_down_is_503_and_our_tokens_still_work(make_api: MakeApi, free_url, caplog):
    caplog.set_level(logging.DEBUG)
    api = await make_api(rocketchat_url=free_url)
    answer = await api.get(PATH, ALICE)
    assert (answer.status, answer.body, answer.headers["Retry-After"]) == (503, UNREACHABLE, "1")
    ours = await api.token("ours-2")
    assert (await api.get(PATH, ours)).status == 200
    ready = (await api.get("/readyz")).json()["checks"]["rocketchat"]
    assert ready["ok"] is False and ready["error"]
    logged = "\n".join(JsonFormatter().format(r) + repr(vars(r)) for r in caplog.records)
    assert "Rocket.Chat not reachable at startup" in logged
    assert TOKEN not in logged and ours["X-Auth-Token"] not in logged


async def test_end_to_end_slow_rocketchat_is_503(make_api: MakeApi, rocketchat):
    rc, url = rocketchat
    api = await make_api(rocketchat_url=url, rocketchat_timeout_s=0.3)
    rc.delay_s = 2.0
    started = time.monotonic()
    answer = await api.get(PATH, ALICE)
    assert (answer.status, answer.body) == (503, UNREACHABLE)
    assert time.monotonic() - started < 1.5


async def test_end_to_end_a_hundred_concurrent_requests_make_one_me_call(make_api: MakeApi, rocketchat):
    rc, url = rocketchat
    rc.delay_s = 0.1
    api = await make_api(rocketchat_url=url)
    answers = await asyncio.gather(*(api.get(PATH, ALICE) for _ in range(100)))
    assert [a.status for a in answers] == [200] * 100
    assert rc.me_calls == 1


async def test_end_to_end_readiness_reports_rocketchat(make_api: MakeApi, rocketchat):
    _, url = rocketchat
    api = await make_api(rocketchat_url=url)
    checks = (await api.get("/readyz")).json()["checks"]
    assert checks["rocketchat"] == {"ok": True, "error": None}
    plain = await make_api()
    assert "rocketchat" not in (await plain.get("/readyz")).json()["checks"]
