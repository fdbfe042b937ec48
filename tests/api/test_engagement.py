"""Contract tests of GET /api/v1/engagement-dashboard/users/active-users against the real Redis.

Every row of the wire contract's error table and every validation example, byte for byte, headers included;
success bodies across month and year ends, in a DST zone, for reversed and huge ranges, and every id of every
retained day for a stream of events over more than Rocket.Chat's 45 days.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
import pytest

from activeusers.days import days_between, retained_days
from activeusers.writer import ActivityWriter
from api.state import TOKENS
from consumer.ingest import Classifier, RecordSlice
from tests.support.events import generate
from tests.support.oracle import activity

PATH = "/api/v1/engagement-dashboard/users/active-users"
V1 = "2026-01-01T00:00:00.000Z"
V2 = "2026-01-31T23:59:59.999Z"
LOGIN = b'{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}'  # noqa: E501
FORBIDDEN = (
    b'{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}'
)
EMPTY = b'{"month":[],"success":true}'
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}


def invalid(field: str) -> bytes:
    return f'{{"success":false,"error":"Match error: Failed Match.Where validation in field {field}"}}'.encode()


def missing(field: str) -> bytes:
    return f'{{"success":false,"error":"Match error: Missing key \'{field}\'"}}'.encode()


def assert_answer(answer, status: int, body: bytes) -> None:
    assert (answer.status, answer.body) == (status, body)
    for name, value in JSON_HEADERS.items():
        assert answer.headers.get(name) == value, name


def q(**params: str) -> str:
    return PATH + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


# --- 401 -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-User-Id": "admin-user-1"},
        {"X-Auth-Token": "whatever"},
        {"X-User-Id": "", "X-Auth-Token": ""},
        {"X-User-Id": "admin-user-1", "X-Auth-Token": "not-a-real-token"},
    ],
    ids=["none", "user-only", "token-only", "empty", "unknown-token"],
)
async def test_unauthenticated_requests_get_401(api, admin, headers):
    assert_answer(await api.get(q(start=V1, end=V2), headers), 401, LOGIN)


async def test_token_of_another_user_is_401(api, admin):
    assert_answer(await api.get(q(start=V1, end=V2), {**admin, "X-User-Id": "someone-else"}), 401, LOGIN)


async def test_header_names_are_case_insensitive(api, admin):
    lowered = {name.lower(): value for name, value in admin.items()}
    assert_answer(await api.get(q(start=V1, end=V2), lowered), 200, EMPTY)


async def test_401_comes_before_400(api):
    assert_answer(await api.get(PATH + "?start=bad"), 401, LOGIN)


# --- 403 -------------------------------------------------------------------------------------------------------


async def test_token_without_permission_is_403(api):
    plain = await api.token("plain-user-2", permissions=())
    assert_answer(await api.get(q(start=V1, end=V2), plain), 403, FORBIDDEN)


async def test_403_comes_before_400(api):
    plain = await api.token("plain-user-2", permissions=())
    assert_answer(await api.get(PATH + "?start=bad&end=worse", plain), 403, FORBIDDEN)
    assert_answer(await api.get(PATH, plain), 403, FORBIDDEN)


async def test_revoked_token_is_401(api):
    headers = await api.token("admin-user-1")
    records = await api.client.app[TOKENS].all()
    await api.client.app[TOKENS].revoke(records[0].id)
    assert_answer(await api.get(q(start=V1, end=V2), headers), 401, LOGIN)


# --- 400: the contract's validation examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "body"),
    [
        # The contract's examples of invalid values, each as start (end valid) ...
        ("start=2023-10-05T14:48:00Z&end=" + V2, invalid("start")),
        ("start=2023-10-05T14:48:00.000%2B00:00&end=" + V2, invalid("start")),
        ("start=2023-10-05&end=" + V2, invalid("start")),
        ("start=2023-02-30T00:00:00.000Z&end=" + V2, invalid("start")),
        ("start=2023-10-05T24:00:00.000Z&end=" + V2, invalid("start")),
        ("start=&end=" + V2, invalid("start")),
        (f"start={V1}&start={V1}&end={V2}", invalid("start")),
        # ... and as end.
        (f"start={V1}&end=2023-10-05T14:48:00Z", invalid("end")),
        (f"start={V1}&end=2023-10-05", invalid("end")),
        (f"start={V1}&end=", invalid("end")),
        (f"start={V1}&end={V2}&end={V2}", invalid("end")),
        # Order: present parameters in query order, first failure wins; then missing, start before end.
        ("end=bad", invalid("end")),
        (f"end={V2}", missing("start")),
        ("end=bad&start=bad", invalid("end")),
        ("start=bad&end=bad", invalid("start")),
        (f"start={V1}", missing("end")),
        ("", missing("start")),
        ("foo=bar", missing("start")),
        (f"end={V2}&start=bad", invalid("start")),
        (f"end={V2}&start={V1}&start={V1}", invalid("start")),
        (f"start={V1}&end=bad&start=bad", invalid("start")),
        # More values that do not survive the toISOString round trip.
        ("start=2023-10-05T14:48:00.000z&end=" + V2, invalid("start")),
        ("start=2023-10-05T14:48:00.00Z&end=" + V2, invalid("start")),
        ("start=2023-10-05T14:48:00.0000Z&end=" + V2, invalid("start")),
        ("start=2023-10-05T14:60:00.000Z&end=" + V2, invalid("start")),
        ("start=2023-10-05T14:48:60.000Z&end=" + V2, invalid("start")),
        ("start=2023-13-05T14:48:00.000Z&end=" + V2, invalid("start")),
        ("start=2023-00-05T14:48:00.000Z&end=" + V2, invalid("start")),
        ("start=2023-10-00T14:48:00.000Z&end=" + V2, invalid("start")),
        ("start=2023-02-29T00:00:00.000Z&end=" + V2, invalid("start")),
        ("start=1900-02-29T00:00:00.000Z&end=" + V2, invalid("start")),
        ("start=%2B002023-10-05T14:48:00.000Z&end=" + V2, invalid("start")),
        ("start=2023-10-05T14:48:00.000Z%20&end=" + V2, invalid("start")),
        ("start=2023-10-05+14:48:00.000Z&end=" + V2, invalid("start")),
        ("start&end=" + V2, invalid("start")),
        # Malformed encodings must be a 400, never a 500.
        ("start=%ZZ&end=" + V2, invalid("start")),
        ("start=%FF%FE&end=" + V2, invalid("start")),
        ("start=%E0%A4%A&end=" + V2, invalid("start")),
        ("start=%&end=%", invalid("start")),
        ("&&&=&==&", missing("start")),
        ("start=\u0661\u0669\u0667\u0660-01-01T00:00:00.000Z&end=" + V2, invalid("start")),
    ],
)
async def test_validation_errors(api, admin, query, body):
    assert_answer(await api.get(PATH + "?" + query, admin), 400, body)


@pytest.mark.parametrize(
    "query",
    [
        f"start={V1}&end={V2}",
        f"end={V2}&start={V1}",
        f"foo=1&start={V1}&bar=&end={V2}&baz",
        f"st%61rt={V1}&end={V2}",
        "start=2024-02-29T00:00:00.000Z&end=2000-02-29T23:59:59.999Z",
        "start=0000-01-01T00:00:00.000Z&end=9999-12-31T23:59:59.999Z",
    ],
)
async def test_valid_queries_succeed(api, admin, query):
    answer = await api.get(PATH + "?" + query, admin)
    assert answer.status == 200, answer.body


# --- 200 bodies -------------------------------------------------------------------------------------------------


def expected(found: dict[date, set[str]]) -> bytes:
    """The contract's body for these day sets (zero days omitted, newest first, keys in order, ids sorted)."""
    month = [
        {"usersList": sorted(users), "users": len(users), "day": d.day, "month": d.month, "year": d.year}
        for d, users in sorted(found.items(), reverse=True)
        if users
    ]
    return orjson.dumps({"month": month, "success": True})


async def test_exact_body_of_the_contract_example(api, admin, seed):
    seed({date(2026, 2, 27): ["rYhzFRd2QZjNwAAXX", "hFDuCPam7sWziWFYa"], date(2026, 2, 26): ["rbAXPnMktTFbNpwtJ"]})
    answer = await api.get(q(start="2026-02-26T00:00:00.000Z", end="2026-02-27T00:00:00.000Z"), admin)
    assert_answer(
        answer,
        200,
        b'{"month":[{"usersList":["hFDuCPam7sWziWFYa","rYhzFRd2QZjNwAAXX"],"users":2,"day":27,"month":2,'
        b'"year":2026},{"usersList":["rbAXPnMktTFbNpwtJ"],"users":1,"day":26,"month":2,"year":2026}],"success":true}',
    )


async def test_month_and_year_ends_and_zero_days_omitted(make_api, seed):
    api = await make_api()
    admin = await api.token("admin-user-1")
    data = {
        date(2025, 12, 30): {"a", "b"},
        date(2025, 12, 31): {"b"},
        # 2026-01-01 has nobody: omitted.
        date(2026, 1, 2): {"c", "a"},
        date(2026, 1, 31): {"d"},
        date(2026, 2, 1): {"d", "e", "f"},
        date(2026, 2, 28): {"g"},
        date(2026, 3, 1): {"h"},
    }
    seed(data)
    answer = await api.get(q(start="2025-12-30T00:00:00.000Z", end="2026-03-01T23:59:59.999Z"), admin)
    assert_answer(answer, 200, expected(data))
    assert [(e["year"], e["month"], e["day"]) for e in answer.json()["month"]][:2] == [(2026, 3, 1), (2026, 2, 28)]


async def test_both_end_days_count_whole(api, admin, seed):
    seed({date(2026, 1, 30): {"x"}, date(2026, 1, 31): {"a"}, date(2026, 2, 1): {"b"}, date(2026, 2, 2): {"y"}})
    answer = await api.get(q(start="2026-01-31T23:59:59.999Z", end="2026-02-01T00:00:00.000Z"), admin)
    assert_answer(answer, 200, expected({date(2026, 1, 31): {"a"}, date(2026, 2, 1): {"b"}}))


async def test_reversed_range_is_empty(api, admin, seed):
    seed({date(2026, 1, 31): {"a"}, date(2026, 2, 1): {"b"}})
    answer = await api.get(q(start="2026-02-01T00:00:00.000Z", end="2026-01-31T00:00:00.000Z"), admin)
    assert_answer(answer, 200, EMPTY)


async def test_dst_zone_truncates_to_local_days(make_api, seed):
    ny = await make_api(activity_timezone="America/New_York")
    headers = await ny.token("admin-user-1")
    data = {date(2026, 3, 7): {"sat"}, date(2026, 3, 8): {"dst-day"}, date(2026, 3, 9): {"mon"}}
    seed(data, "America/New_York")
    # 2026-03-08 in New York runs from 05:00Z (EST) to 04:00Z next day (EDT): a 23-hour day.
    only_dst_day = q(start="2026-03-08T05:00:00.000Z", end="2026-03-09T03:59:59.999Z")
    assert_answer(await ny.get(only_dst_day, headers), 200, expected({date(2026, 3, 8): {"dst-day"}}))
    one_ms_wider = q(start="2026-03-08T04:59:59.999Z", end="2026-03-09T04:00:00.000Z")
    assert_answer(await ny.get(one_ms_wider, headers), 200, expected(data))


async def test_dst_end_day_in_new_york(make_api, seed):
    ny = await make_api(activity_timezone="America/New_York")
    headers = await ny.token("admin-user-1")
    data = {date(2025, 11, 1): {"a"}, date(2025, 11, 2): {"b"}, date(2025, 11, 3): {"c"}}
    seed(data, "America/New_York")
    # 2025-11-02 runs from 04:00Z (EDT) to 05:00Z next day (EST): a 25-hour day.
    answer = await ny.get(q(start="2025-11-02T04:00:00.000Z", end="2025-11-03T04:59:59.999Z"), headers)
    assert_answer(answer, 200, expected({date(2025, 11, 2): {"b"}}))


async def test_zone_bucket_names_keep_zones_apart(make_api, seed):
    utc = await make_api()
    headers = await utc.token("admin-user-1")
    seed({date(2026, 3, 1): {"ny-only"}}, "America/New_York")
    assert_answer(await utc.get(q(start=V1, end="2026-03-10T00:00:00.000Z"), headers), 200, EMPTY)


async def test_huge_range_reads_only_retained_days(make_api, seed, now_ms, store_reads):
    app = await make_api(retention_days=30)
    headers = await app.token("admin-user-1")
    today = date(2026, 3, 15)
    data = {
        today - timedelta(days=200): {"expired"},  # still stored by the seeding writer, outside the app's window
        today - timedelta(days=29): {"old"},
        today - timedelta(days=1): {"recent"},
        today: {"today"},
    }
    seed(data)
    answer = await app.get(q(start="0000-01-01T00:00:00.000Z", end="9999-12-31T23:59:59.999Z"), headers)
    del data[today - timedelta(days=200)]
    assert_answer(answer, 200, expected(data))
    # Only the retention window (plus tomorrow) is touched: 0000..9999 costs nothing extra. Every day of it is read
    # once (its bitmaps, its ids), the days that hold users among them.
    listed = store_reads.listed
    assert len(listed) == len(set(listed))
    assert set(listed) == set(days_between(*retained_days(now_ms, app.settings.zone, 30)))
    assert set(data) <= set(listed)
    assert sorted(store_reads.fetched) == sorted(listed)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata", "UTC"])
async def test_extreme_dates_in_extreme_zones(make_api, zone):
    app = await make_api(activity_timezone=zone)
    headers = await app.token("admin-user-1")
    for start, end in [
        ("0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"),
        ("9999-12-31T23:59:59.999Z", "0000-01-01T00:00:00.000Z"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ("0000-01-01T00:00:00.000Z", "0000-01-01T00:00:00.000Z"),
    ]:
        assert_answer(await app.get(q(start=start, end=end), headers), 200, EMPTY)


async def test_large_day_set(api, admin, seed):
    users = {f"user-{i:06d}" for i in range(20_000)}
    seed({date(2026, 3, 10): users})
    answer = await api.get(q(start="2026-03-10T00:00:00.000Z", end="2026-03-10T00:00:00.000Z"), admin)
    assert_answer(answer, 200, expected({date(2026, 3, 10): users}))


TODAY = date(2026, 3, 15)  # the apps' clock (tests/api/conftest.py)


def seed_stream(settings, redis_client, events, now_ms: int) -> None:
    """Store ``events`` as the consumer does: the records classified by its real classifier at ``now_ms``, the
    batch stored by its real writer (a long expiry, so the seeded keys outlive the wall clock's drift)."""
    records = [orjson.dumps(event) for event in events]
    part = RecordSlice("events", 0, range(len(records)), [None] * len(records), list(records))
    batch = Classifier(settings).classify([part], now_ms)
    assert not batch.dead_letters
    long_lived = replace(settings, retention_days=5000, hour_retention_days=5000)
    ActivityWriter.of(redis_client, long_lived).write(batch.user_sets)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
async def test_every_id_of_every_retained_day_past_45_days(make_api, redis_client, now_ms, zone):
    """The acceptance test of the names lists: with RETENTION_DAYS=400 and activity over 75 days, active-users
    over the whole range lists every id of every day (no day answers counts without ids), exactly the oracle's,
    byte for byte."""
    api = await make_api(retention_days=400, activity_timezone=zone)
    headers = await api.token("admin-user-1")
    events = [sent.event for sent in generate(seed=45, count=6000, now_ms=now_ms, users=500, days=75)]
    seed_stream(api.settings, redis_client, events, now_ms)
    days = activity(events, ZoneInfo(zone), now_ms, retention_days=400).days
    today = date(2026, 3, 15)
    assert min(days) <= today - timedelta(days=74) and max(days) == today
    assert sum(1 for day in days if day < today - timedelta(days=45)) >= 25  # what the day sets no longer kept

    answer = await api.get(q(start="2025-12-01T00:00:00.000Z", end="2026-03-15T23:59:59.999Z"), headers)

    want = [
        {"usersList": sorted(days[day]), "users": len(days[day]), "day": day.day, "month": day.month, "year": day.year}
        for day in sorted(days, reverse=True)
    ]
    assert_answer(answer, 200, orjson.dumps({"month": want, "success": True}))
    month = answer.json()["month"]
    assert len(month) == len(days)
    assert all(element["users"] == len(element["usersList"]) > 0 for element in month)
    assert all(element["usersList"] == sorted(set(element["usersList"])) for element in month)
    # The same answer again, from the cache, and from a new process that mirrors the names lists afresh.
    assert (await api.get(q(start="2025-12-01T00:00:00.000Z", end="2026-03-15T23:59:59.999Z"), headers)).body == (
        answer.body
    )
    fresh = await make_api(retention_days=400, activity_timezone=zone)
    again = await fresh.get(q(start="2025-12-01T00:00:00.000Z", end="2026-03-15T23:59:59.999Z"), headers)
    assert again.body == answer.body
