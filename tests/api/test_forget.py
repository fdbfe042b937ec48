"""``POST /api/v1/active-users/forget`` on the real Redis: after it answers, two API processes that had cached
every range answer every endpoint exactly as an API over an index that never held the users (an oracle seeded
without them); the checks' order (401, 403, then the body's 400s, exact messages), the body limit, the metric."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
import redis

from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from api.auth import FORGET_USERS, VIEW_ENGAGEMENT_DASHBOARD
from api.routes import forget
from api.routes.engagement import ACTIVE_USERS, BY_TIME_OF_DAY, HOURLY, NEW_USERS, WEEKLY
from api.routes.summary import PATH as SUMMARY

TODAY = date(2026, 3, 15)
GONE = ["user-3", "user-7", "never-seen"]
NOT_JSON = b'{"success":false,"error":"The body must be JSON (UTF-8)"}'


def _iso(day: date, end: bool = False) -> str:
    return f"{day.isoformat()}T{'23:59:59.999' if end else '00:00:00.000'}Z"


def _urls() -> list[str]:
    urls = []
    for span in (0, 6, 29, 89, 120):
        first = TODAY - timedelta(days=span)
        dates = f"start={_iso(first)}&end={_iso(TODAY, end=True)}"
        urls += [f"{path}?{dates}" for path in (ACTIVE_USERS, NEW_USERS, BY_TIME_OF_DAY, SUMMARY)]
        urls.append(f"{SUMMARY}?{dates}&format=csv")
    for day in (TODAY, TODAY - timedelta(days=3)):
        urls += [f"{HOURLY}?start={day.isoformat()}T12:00:00.000Z", f"{WEEKLY}?start={_iso(day)}"]
    return urls


def _history(without: set[str]) -> UserSets:
    """130 days of 12 users (a seeded random pattern), users created on some days, minus ``without``."""
    rng, sets = random.Random(25), UserSets()
    for ago, user in itertools.product(range(130), range(12)):
        name, day = f"user-{user}", TODAY - timedelta(days=ago)
        active, hour, created = rng.random() < 0.4, rng.randrange(24), rng.random() < 0.05
        if name not in without and active:
            sets.add_active(day, hour, name, 1)
            if created:
                sets.add_created(day, name, 1)
    return sets


@pytest.fixture
def store(base_settings: Any, redis_client: redis.Redis) -> Callable[[str, set[str]], None]:
    def write(prefix: str, without: set[str]) -> None:
        settings = replace(base_settings, redis_key_prefix=prefix, retention_days=5000, hour_retention_days=5000)
        ActivityWriter.of(redis_client, settings).write(_history(without))

    return write


async def _answers(api: Any, headers: Mapping[str, str]) -> dict[str, bytes]:
    found = {}
    for url in _urls():
        answer = await api.get(url, headers)
        assert answer.status == 200, (url, answer.body)
        found[url] = answer.body
    return found


async def test_after_forget_every_process_answers_as_if_the_users_never_were(
    make_api: Callable[..., Awaitable[Any]], store: Callable[[str, set[str]], None], base_settings: Any
) -> None:
    store(base_settings.redis_key_prefix, set())
    oracle_prefix = base_settings.redis_key_prefix + "oracle:"
    store(oracle_prefix, set(GONE))
    first, second = await make_api(), await make_api()
    viewer = await first.token("viewer")
    warm = [await _answers(api, viewer) for api in (first, second)]
    witness = await make_api(redis_key_prefix=oracle_prefix)
    oracle = await _answers(witness, await witness.token("viewer"))
    assert warm[0] == warm[1] != oracle
    eraser = await first.token("dpo", (FORGET_USERS,))
    body = orjson.dumps({"userIds": [*GONE, GONE[0]]})
    response = await first.client.post(forget.PATH, data=body, headers=eraser)
    assert (response.status, await response.read()) == (200, b'{"forgotten":3,"success":true}')
    assert response.headers["Cache-Control"] == "no-store"
    for api in (first, second):
        assert await _answers(api, viewer) == oracle
    metrics = (await first.get("/metrics")).body.decode()
    assert "activeusers_api_forgotten_users_total 3.0" in metrics


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "The body must be JSON (UTF-8)"),
        (b"\xff\xfe", "The body must be JSON (UTF-8)"),
        (b"", "The body must be JSON (UTF-8)"),
        (b'["a"]', 'The body must be a JSON object {"userIds":[...]} with no other key'),
        (b'{"userId":["a"]}', 'The body must be a JSON object {"userIds":[...]} with no other key'),
        (b'{"userIds":["a"],"restore":true}', 'The body must be a JSON object {"userIds":[...]} with no other key'),
        (b'{"userIds":["a"],"userIds":["b"]}', "The body repeats the key userIds"),
        (b'{"userIds":"a"}', "userIds must be an array of strings"),
        (b'{"userIds":[]}', "userIds must hold 1 to 1000 ids"),
        (orjson.dumps({"userIds": [f"u{i}" for i in range(1001)]}), "userIds must hold 1 to 1000 ids"),
        (orjson.dumps({"userIds": ["x" * 129]}), "userIds must hold strings of 1 to 128 characters"),
        (b'{"userIds":[""]}', "userIds must hold strings of 1 to 128 characters"),
        (b'{"userIds":[7]}', "userIds must hold strings of 1 to 128 characters"),
    ],
)
async def test_a_bad_body_is_a_400_saying_what_is_wrong(api: Any, body: bytes, error: str) -> None:
    headers = await api.token("dpo", (FORGET_USERS,))
    response = await api.client.post(forget.PATH, data=body, headers=headers)
    assert response.status == 400
    assert await response.read() == orjson.dumps({"success": False, "error": error})


async def test_the_largest_valid_body_is_read(api: Any) -> None:
    headers = await api.token("dpo", (FORGET_USERS,))
    ids = [f"{i:03d}" + "\U0001f600" * 125 for i in range(1000)]
    body = json.dumps({"userIds": ids}, indent=2).encode()  # every emoji escaped: 12 bytes each
    response = await api.client.post(forget.PATH, data=body, headers=headers)
    assert (response.status, await response.read()) == (200, b'{"forgotten":1000,"success":true}')
    too_big = b" " * (forget.MAX_BODY_BYTES + 1)
    assert (await api.client.post(forget.PATH, data=too_big, headers=headers)).status == 413


async def test_401_then_403_before_the_body(api: Any) -> None:
    unknown = {"X-User-Id": "dpo", "X-Auth-Token": "nope"}
    response = await api.client.post(forget.PATH, data=b"not json", headers=unknown)
    assert response.status == 401
    viewer = await api.token("viewer", (VIEW_ENGAGEMENT_DASHBOARD,))
    response = await api.client.post(forget.PATH, data=b"not json", headers=viewer)
    assert response.status == 403
    assert (await response.json())["error"].endswith("[error-unauthorized]")
    eraser = await api.token("dpo", (FORGET_USERS,))
    response = await api.client.post(forget.PATH, data=b"not json", headers=eraser)
    assert (response.status, await response.read()) == (400, NOT_JSON)
    # The data routes do not take the new permission for theirs.
    assert (await api.get(f"{SUMMARY}?start={_iso(TODAY)}&end={_iso(TODAY)}", eraser)).status == 403
    # Other routes still refuse bodies over 1 kB.
    response = await api.client.get(SUMMARY, data=b" " * 2000, headers=viewer)
    assert response.status == 413
