"""The optional rate limit: Rocket.Chat's 429 body and X-RateLimit-* headers, checked after 401/403, before 400."""

from __future__ import annotations

import math

PATH = "/api/v1/engagement-dashboard/users/active-users?start=2026-03-01T00:00:00.000Z&end=2026-03-15T00:00:00.000Z"


def window_end_ms(now_ms: int, window_ms: int) -> int:
    return (now_ms // window_ms + 1) * window_ms


async def test_off_by_default(api, admin):
    for _ in range(5):
        answer = await api.get(PATH, admin)
        assert answer.status == 200
        assert "X-RateLimit-Limit" not in answer.headers


async def test_429_after_the_budget(make_api, now_ms):
    app = await make_api(api_rate_limit=2, api_rate_limit_window_s=3600)
    headers = await app.token("admin-user-1")
    reset = window_end_ms(now_ms, 3_600_000)
    first = await app.get(PATH, headers)
    assert first.status == 200
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("2", "1")
    assert first.headers["X-RateLimit-Reset"] == str(reset)
    # A validation error still counts (the limit is checked before the query).
    second = await app.get(PATH.replace("start=", "start=x"), headers)
    assert second.status == 400
    assert second.headers["X-RateLimit-Remaining"] == "0"
    third = await app.get(PATH, headers)
    wait = math.ceil((reset - now_ms) / 1000)
    assert third.status == 429
    assert third.body == (
        b'{"success":false,"error":"Error, too many requests. Please slow down. You must wait '
        + str(wait).encode()
        + b' seconds before trying this endpoint again. [error-too-many-requests]"}'
    )
    assert third.headers["Content-Type"] == "application/json"
    assert third.headers["Cache-Control"] == "no-store"
    assert (third.headers["X-RateLimit-Limit"], third.headers["X-RateLimit-Remaining"]) == ("2", "0")
    assert third.headers["X-RateLimit-Reset"] == str(reset)


async def test_auth_and_permission_come_first_and_users_are_separate(make_api):
    app = await make_api(api_rate_limit=1, api_rate_limit_window_s=60)
    alice = await app.token("alice")
    bob = await app.token("bob")
    plain = await app.token("plain", permissions=())
    assert (await app.get(PATH, alice)).status == 200
    assert (await app.get(PATH, alice)).status == 429
    assert (await app.get(PATH, bob)).status == 200
    assert (await app.get(PATH, {**alice, "X-Auth-Token": "wrong"})).status == 401
    assert (await app.get(PATH, plain)).status == 403
    assert (await app.get(PATH, plain)).status == 403


async def test_new_window_resets_the_count(make_api, now_ms):
    clock = [now_ms / 1000]
    app = await make_api(clock=lambda: clock[0], api_rate_limit=1, api_rate_limit_window_s=60)
    headers = await app.token("admin-user-1")
    assert (await app.get(PATH, headers)).status == 200
    assert (await app.get(PATH, headers)).status == 429
    clock[0] += 60
    assert (await app.get(PATH, headers)).status == 200
