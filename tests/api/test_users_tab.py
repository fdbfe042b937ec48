"""Contract tests of the Users tab's other four endpoints against the real Redis: every error body of every data
route (enumerated from the router), the exact success bodies, and what each range costs.

The app's clock is conftest's NOW (2026-03-15T12:00:00.000Z); hours and days are written to the index with the
consumer's real writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from activeusers.days import retained_days
from activeusers.reader import ActivityReader
from activeusers.settings import Settings
from api.app import ROUTES, create_app
from api.routes import engagement

LOGIN = (
    b'{"success":false,"error":"You must be logged in to do this.","status":"error",'
    b'"message":"You must be logged in to do this."}'
)
FORBIDDEN = (
    b'{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}'
)
V1 = "2026-03-01T00:00:00.000Z"
V2 = "2026-03-15T23:59:59.999Z"
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}
PUBLIC = {"/healthz", "/readyz", "/metrics", "/api/openapi.json", "/dashboard", "/", "/dashboard/assets/{path}"}
START_ONLY = {engagement.HOURLY, engagement.WEEKLY}
TODAY = date(2026, 3, 15)


def data_paths() -> list[str]:
    """Every GET route of the app that is not one of the public operational ones, read from the router (POST
    forget has tests of its own: tests/api/test_forget.py)."""
    app = create_app(Settings())
    routes = app.router.routes()
    paths = sorted({r.resource.canonical for r in routes if r.resource is not None and r.method == "GET"} - PUBLIC)
    assert len(paths) == 9
    return paths


DATA_PATHS = data_paths()
USERS_TAB = [path for path in DATA_PATHS if path.startswith(engagement.PREFIX)]


def invalid(field: str) -> bytes:
    return f'{{"success":false,"error":"Match error: Failed Match.Where validation in field {field}"}}'.encode()


def missing(field: str) -> bytes:
    return f'{{"success":false,"error":"Match error: Missing key \'{field}\'"}}'.encode()


def assert_answer(answer: Any, status: int, body: bytes) -> None:
    assert (answer.status, answer.body) == (status, body)
    for name, value in JSON_HEADERS.items():
        assert answer.headers.get(name) == value, name


def test_the_route_table_names_every_users_tab_endpoint():
    assert set(USERS_TAB) == {
        engagement.ACTIVE_USERS,
        engagement.NEW_USERS,
        engagement.BY_TIME_OF_DAY,
        engagement.HOURLY,
        engagement.WEEKLY,
    }
    assert {route.path for route in ROUTES if route.guarded and route.method == "GET"} == set(DATA_PATHS)


# --- errors, every data route ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DATA_PATHS)
async def test_401_before_everything(api, admin, path):
    for query in (f"?start={V1}&end={V2}", "?start=bad", ""):
        assert_answer(await api.get(path + query), 401, LOGIN)
        assert_answer(await api.get(path + query, {**admin, "X-User-Id": "someone-else"}), 401, LOGIN)


@pytest.mark.parametrize("path", DATA_PATHS)
async def test_403_before_400(api, path):
    plain = await api.token("plain-user-2", permissions=())
    for query in (f"?start={V1}&end={V2}", "?start=bad&end=worse", ""):
        assert_answer(await api.get(path + query, plain), 403, FORBIDDEN)


@pytest.mark.parametrize("path", USERS_TAB)
@pytest.mark.parametrize(
    ("query", "both", "start_only"),
    [
        ("", missing("start"), missing("start")),
        ("end=bad", invalid("end"), missing("start")),
        (f"end={V2}", missing("start"), missing("start")),
        ("end=bad&start=bad", invalid("end"), invalid("start")),
        (f"start={V1}", missing("end"), None),
        (f"start={V1}&end=2026-03-15", invalid("end"), None),
        (f"start={V1}&end={V2}&end={V2}", invalid("end"), None),
        ("start=2023-02-30T00:00:00.000Z&end=" + V2, invalid("start"), invalid("start")),
        ("start=2023-10-05T14:48:00Z&end=" + V2, invalid("start"), invalid("start")),
        (f"start={V1}&start={V1}", invalid("start"), invalid("start")),
        ("start=", invalid("start"), invalid("start")),
    ],
)
async def test_validation_bodies(api, admin, path, query, both, start_only):
    expected = start_only if path in START_ONLY else both
    answer = await api.get(path + "?" + query, admin)
    if expected is None:
        # chat-busier takes only start: an end, even an invalid one, is an unknown parameter.
        assert answer.status == 200, answer.body
    else:
        assert_answer(answer, 400, expected)


@pytest.mark.parametrize("path", USERS_TAB)
async def test_head_and_post_are_not_data_methods(api, admin, path):
    response = await api.client.request("POST", path + f"?start={V1}&end={V2}", headers=admin)
    assert response.status == 405


# --- bodies ---------------------------------------------------------------------------------------------------


def q(path: str, start: str, end: str | None = None) -> str:
    return path + f"?start={start}" + (f"&end={end}" if end else "")


async def test_new_users_body(api, admin, seed_users):
    seed_users(
        created={
            TODAY: {"n1", "n2"},
            TODAY - timedelta(days=1): {"n3"},
            TODAY - timedelta(days=3): {"n4", "n5", "n6"},
            TODAY - timedelta(days=9): {"n7"},  # previous period of a 7-day range
        }
    )
    # The same user created again (a replay, a duplicate event) is one member of the day's set.
    seed_users(created={TODAY: {"n1"}})
    answer = await api.get(q(engagement.NEW_USERS, "2026-03-09T00:00:00.000Z", V2), admin)
    assert_answer(
        answer,
        200,
        b'{"days":[{"day":"2026-03-15T00:00:00.000Z","users":2},{"day":"2026-03-14T00:00:00.000Z","users":1},'
        b'{"day":"2026-03-12T00:00:00.000Z","users":3}],"period":{"count":6,"variation":5},'
        b'"yesterday":{"count":1,"variation":1},"success":true}',
    )


async def test_new_users_in_berlin(make_api, seed_users):
    api = await make_api(activity_timezone="Europe/Berlin")
    admin = await api.token("admin-user-1")
    seed_users(created={date(2026, 3, 14): {"a"}}, zone="Europe/Berlin")
    answer = await api.get(q(engagement.NEW_USERS, "2026-03-13T23:00:00.000Z", "2026-03-14T22:59:59.999Z"), admin)
    assert answer.json()["days"] == [{"day": "2026-03-13T23:00:00.000Z", "users": 1}]


async def test_users_by_time_of_day_body(api, admin, seed_users):
    seed_users(active={(TODAY, 9): {"a", "b"}, (TODAY, 10): {"b"}, (TODAY - timedelta(days=1), 23): {"c"}})
    answer = await api.get(q(engagement.BY_TIME_OF_DAY, "2026-03-14T23:30:00.000Z", "2026-03-15T10:00:00.000Z"), admin)
    assert_answer(
        answer,
        200,
        b'{"week":[{"users":1,"hour":10,"day":15,"month":3,"year":2026},'
        b'{"users":2,"hour":9,"day":15,"month":3,"year":2026},'
        b'{"users":1,"hour":23,"day":14,"month":3,"year":2026}],"success":true}',
    )
    # Exact instants: an end before 10:00 leaves hour 10 out.
    narrower = await api.get(
        q(engagement.BY_TIME_OF_DAY, "2026-03-15T00:00:00.000Z", "2026-03-15T09:59:59.999Z"), admin
    )
    assert narrower.json()["week"] == [{"users": 2, "hour": 9, "day": 15, "month": 3, "year": 2026}]


async def test_hourly_data_counts_two_hour_slots_as_unions(api, admin, seed_users):
    yesterday = TODAY - timedelta(days=1)
    seed_users(
        active={
            (TODAY, 10): {"a", "b"},
            (TODAY, 11): {"b", "c"},  # slot 10: a, b, c
            (TODAY, 0): {"d"},  # slot 0
            (yesterday, 12): {"e"},  # outside (start - 24 h, start] for start = 12:00 today
            (yesterday, 13): {"a", "f"},  # slot 12 (yesterday's 13) together with today's 12
            (TODAY, 12): {"f", "g"},  # slot 12: a, f, g
        }
    )
    answer = await api.get(q(engagement.HOURLY, "2026-03-15T12:00:00.000Z", "ignored-end"), admin)
    hours = {slot["hour"]: slot["users"] for slot in answer.json()["hours"]}
    assert [slot["hour"] for slot in answer.json()["hours"]] == list(range(22, -1, -2))
    assert hours == {22: 0, 20: 0, 18: 0, 16: 0, 14: 0, 12: 3, 10: 3, 8: 0, 6: 0, 4: 0, 2: 0, 0: 1}
    assert answer.body.startswith(b'{"hours":[{"users":0,"hour":22},')


async def test_hourly_data_without_users_is_empty(api, admin, seed_users):
    seed_users(active={(TODAY - timedelta(days=2), 10): {"a"}})
    assert_answer(await api.get(q(engagement.HOURLY, V2), admin), 200, b'{"hours":[],"success":true}')


async def test_hourly_data_on_a_spring_forward_day(make_api, seed_users):
    # Berlin 2026-03-29 has no hour 2; the 24 hours up to its end include 2026-03-28's hour 23, which shares
    # slot 22 with the day's hours 22 and 23 (one user in all three counts once).
    api = await make_api(activity_timezone="Europe/Berlin", clock=lambda: 1774828800.0)  # 2026-03-30T00:00Z
    admin = await api.token("admin-user-1")
    seed_users(
        active={(date(2026, 3, 28), 23): {"x", "y"}, (date(2026, 3, 29), 22): {"x"}, (date(2026, 3, 29), 23): {"z"}},
        zone="Europe/Berlin",
    )
    answer = await api.get(q(engagement.HOURLY, "2026-03-29T21:59:59.999Z"), admin)
    assert answer.json()["hours"][0] == {"users": 3, "hour": 22}


async def test_weekly_data_body(api, admin, seed):
    seed({TODAY: {"a", "b"}, TODAY - timedelta(days=7): {"c"}, TODAY - timedelta(days=8): {"d"}})
    answer = await api.get(q(engagement.WEEKLY, "2026-03-15T00:00:00.000Z"), admin)
    assert_answer(
        answer,
        200,
        b'{"month":[{"users":2,"day":15,"month":3,"year":2026},{"users":1,"day":8,"month":3,"year":2026}],'
        b'"success":true}',
    )


async def test_weekly_users_equal_active_users(api, admin, seed):
    seed({TODAY - timedelta(days=n): {f"u{i}" for i in range(n + 1)} for n in range(8)})
    weekly = (await api.get(q(engagement.WEEKLY, V2), admin)).json()["month"]
    active = (await api.get(q(engagement.ACTIVE_USERS, "2026-03-08T00:00:00.000Z", V2), admin)).json()["month"]
    assert [(w["users"], w["day"]) for w in weekly] == [(a["users"], a["day"]) for a in active]


# --- what ranges cost -------------------------------------------------------------------------------------------


@pytest.fixture
def counted_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every index key of user bucket 0 the apps of the test read (fetched with ``ActivityReader._mget`` or
    unioned in Redis with ``ActivityReader._union_counts``, the same parts in every bucket), and no user id listed
    at all."""
    keys: list[str] = []
    real_mget, real_unions = ActivityReader._mget, ActivityReader._union_counts

    async def mget(self: ActivityReader, parts: list[str]) -> Any:
        keys.extend(self._keys.in_bucket(0, parts))
        return await real_mget(self, parts)

    async def unions(self: ActivityReader, groups: Any, *kept: Any) -> Any:
        keys.extend(self._keys.in_bucket(0, [part for group in groups for part in group]))
        return await real_unions(self, groups, *kept)

    async def no_ids(self: ActivityReader, days: Any) -> list[list[str]]:
        raise AssertionError("ids listed by a counting endpoint")

    monkeypatch.setattr(ActivityReader, "_mget", mget)
    monkeypatch.setattr(ActivityReader, "_union_counts", unions)
    monkeypatch.setattr(ActivityReader, "named_bitmaps", no_ids)
    yield keys


EMPTY = {
    engagement.NEW_USERS: b'{"days":[],"period":{"count":0,"variation":0},"yesterday":{"count":0,"variation":0},'
    b'"success":true}',
    engagement.BY_TIME_OF_DAY: b'{"week":[],"success":true}',
    engagement.HOURLY: b'{"hours":[],"success":true}',
    engagement.WEEKLY: b'{"month":[],"success":true}',
}
RANGES = {
    "widest": ("0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"),
    "reversed-widest": ("9999-12-31T23:59:59.999Z", "0000-01-01T00:00:00.000Z"),
    "reversed": (V2, V1),
    "past": ("2001-01-01T00:00:00.000Z", "2001-03-01T00:00:00.000Z"),
    "future": ("2027-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z"),
}


@pytest.mark.parametrize("path", list(EMPTY))
@pytest.mark.parametrize("name", list(RANGES))
async def test_ranges_read_only_retained_keys_and_answer_the_empty_shape(
    make_api, seed_users, counted_keys, now_ms, path, name
):
    api = await make_api(retention_days=30, hour_retention_days=3)
    admin = await api.token("admin-user-1")
    # Data everywhere, also outside retention and in the future, to prove none of it is read.
    seed_users(
        active={(TODAY + timedelta(days=n), h): {"a"} for n in range(-60, 400, 7) for h in (0, 12)},
        created={TODAY + timedelta(days=n): {"a"} for n in range(-60, 400, 7)},
    )
    start, end = RANGES[name]
    answer = await api.get(q(path, start, end), admin)
    assert answer.status == 200
    if name == "future" and path == engagement.NEW_USERS:
        # A future range of D days has a previous period of D days before it, which reaches back into the data.
        assert answer.json()["period"] == {"count": 0, "variation": -sum(1 for n in range(-60, 1, 7) if n >= -30)}
        assert answer.json()["days"] == []
    # chat-busier reads only start: its "reversed" range starts today, where there is data.
    elif name != "widest" and not (name == "reversed" and path in START_ONLY):
        assert answer.body == EMPTY[path], answer.body
    day_oldest, newest = retained_days(now_ms, api.settings.zone, 30)
    hour_oldest, _ = retained_days(now_ms, api.settings.zone, 3)
    for key in counted_keys:
        tag = api.settings.redis_key_prefix + f"{{{api.settings.user_buckets}.0}}:"
        assert key.startswith(tag), key
        kind, _, stamp = key.removeprefix(tag).split(":", 2)
        day = date.fromisoformat(stamp[:10])
        assert day <= newest, key
        assert day >= (hour_oldest if kind == "hour" else day_oldest), key
    assert len(counted_keys) <= 24 * 6
