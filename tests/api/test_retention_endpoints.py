"""``GET /api/v1/active-users/retention`` and ``/stickiness`` on the index written by the consumer's real writer,
against the brute-force oracle of ``tests/cohorts.py``: every cohort, every period, ranges over a DST change inside a
week, a month boundary and a week spanning a year boundary; a late event for a user's earlier day; the parameters'
errors in the contract's order, the defaults, and the CSV forms. (401/403 and the dates' errors of every data
route are in test_users_tab.py, enumerated from the router.)"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from activeusers.days import retained_days
from api.routes.retention import RETENTION, STICKINESS
from tests.support import cohorts

TODAY = date(2026, 3, 15)  # conftest's NOW, a Sunday
NOW_MS = 1_773_576_000_000
V1, V2 = "2026-03-01T00:00:00.000Z", "2026-03-15T23:59:59.999Z"
ZONE = "America/New_York"  # DST begins 2026-03-08, inside the week of 2026-03-02


def iso(day: date, end: bool = False) -> str:
    return f"{day.isoformat()}T{'23:59:59.999' if end else '00:00:00.000'}Z"


def reported(first: date, last: date) -> list[date]:
    oldest, newest = retained_days(NOW_MS, ZoneInfo("UTC"), 400)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [day for day in days if oldest <= day <= newest]


@pytest.fixture
def data(seed_users: Any) -> tuple[dict[date, set[str]], dict[date, set[str]]]:
    rng = random.Random(24)
    people = [f"u{i:03d}" for i in range(150)]
    active: dict[date, set[str]] = {}
    created: dict[date, set[str]] = {}
    for offset in range(-1, 130):  # tomorrow (an early event) back to before the year boundary
        day = TODAY - timedelta(days=offset)
        if rng.random() < 0.1:
            continue
        active[day] = set(rng.sample(people, rng.randint(1, 35)))
        created[day] = set(rng.sample(people, rng.randint(0, 4)))
    active[TODAY - timedelta(days=450)] = {"u000", "ancient"}  # past the API's retention: not a first day it sees
    seed_users(active={(day, 9): users for day, users in active.items()}, created=created)
    return active, created


def body(answer: Any) -> dict[str, Any]:
    assert answer.status == 200, answer.body
    found: dict[str, Any] = orjson.loads(answer.body)
    assert found.pop("success") is True and list(found)[-1] in ("cohorts", "activeDays")
    return found


@pytest.mark.parametrize("period", ["day", "week", "month"])
@pytest.mark.parametrize("cohort", ["first", "new", "active"])
@pytest.mark.parametrize(
    ("first", "last", "periods"),
    [
        (date(2025, 12, 24), date(2026, 1, 8), 3),  # a week spanning the year boundary
        (date(2026, 2, 20), date(2026, 3, 16), 12),  # a month boundary up to tomorrow
        (date(2025, 11, 2), date(2026, 3, 14), 400),
        (date(2026, 3, 10), date(2026, 3, 9), 12),  # reversed: nothing
    ],
)
async def test_retention_equals_the_oracle(api, admin, data, period, cohort, first, last, periods) -> None:
    active, created = data
    query = f"?start={iso(first)}&end={iso(last, True)}&period={period}&cohort={cohort}&periods={periods}"
    found = body(await api.get(RETENTION + query, admin))
    stored = (TODAY - timedelta(days=399), TODAY + timedelta(days=1))
    expected = cohorts.retention(active, created, reported(first, last), stored, TODAY, period, cohort, periods)
    assert found == expected
    if cohort == "active":
        assert all(row["returned"][0] == row["size"] for row in found["cohorts"])


async def test_retention_in_a_zone_with_a_dst_change_inside_a_week(make_api, seed_users) -> None:
    rng = random.Random(8)
    active = {TODAY - timedelta(days=n): {f"z{rng.randrange(40)}" for _ in range(12)} for n in range(30)}
    seed_users(active={(day, 1): users for day, users in active.items()}, zone=ZONE)
    api = await make_api(activity_timezone=ZONE)
    admin = await api.token("admin-user-1")
    first = date(2026, 3, 2)
    found = body(await api.get(RETENTION + f"?start={iso(first)}&end={V2}", admin))
    # 2026-03-02T00:00Z is still March 1st in New York, and 2026-03-15T23:59Z March 15th
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(15)]
    stored = (TODAY - timedelta(days=399), TODAY + timedelta(days=1))
    assert found == cohorts.retention(active, {}, days, stored, TODAY, zone=ZONE)
    assert [row["start"] for row in found["cohorts"]] == ["2026-02-23", "2026-03-02", "2026-03-09"]


async def test_an_earlier_day_arriving_late_moves_a_user_between_cohorts(api, admin, seed_users) -> None:
    week = f"?start={iso(date(2026, 2, 23))}&end={V2}&period=week"
    seed_users(active={(TODAY - timedelta(days=1), 3): {"late"}})
    before = body(await api.get(RETENTION + week, admin))
    assert [row["size"] for row in before["cohorts"]] == [0, 0, 1]
    seed_users(active={(date(2026, 2, 24), 3): {"late"}})  # an event for an earlier day, stored after
    after = body(await api.get(RETENTION + week, admin))
    assert [(row["size"], row["returned"]) for row in after["cohorts"]] == [
        (1, [1, 0, 1]),
        (0, [0, 0]),
        (0, [0]),
    ]
    seed_users(active={(date(2026, 3, 4), 3): {"late"}})  # a later day changes no first day
    assert body(await api.get(RETENTION + week, admin))["cohorts"][0]["size"] == 1


async def test_stickiness_equals_the_oracle(api, admin, data) -> None:
    active, _ = data
    for first, last in ((date(2026, 2, 14), date(2026, 3, 15)), (date(2025, 12, 1), date(2026, 3, 20))):
        found = body(await api.get(STICKINESS + f"?start={iso(first)}&end={iso(last, True)}", admin))
        assert found == cohorts.stickiness(active, reported(first, last))
        assert sum(found["activeDays"]) == found["distinctUsers"]
    empty = body(await api.get(STICKINESS + f"?start={V2}&end={V1}", admin))
    assert empty == {"timezone": "UTC", "start": None, "end": None, "distinctUsers": 0, "activeDays": []}


async def test_the_csv_forms(api, admin, seed_users) -> None:
    seed_users(active={(date(2026, 3, 2), 1): {"a", "b"}, (date(2026, 3, 10), 1): {"a", "c"}})
    answer = await api.get(RETENTION + f"?start={V1}&end={V2}&format=csv", admin)
    assert answer.status == 200 and answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-store" and answer.headers["Pragma"] == "no-cache"
    assert answer.body == (b"cohort,size,k0,k1,k2\r\n2026-02-23,0,0,0,0\r\n2026-03-02,2,2,1,\r\n2026-03-09,1,1,,\r\n")
    answer = await api.get(STICKINESS + f"?start={V1}&end=2026-03-11T00:00:00.000Z&format=csv", admin)
    assert answer.body == b"active_days,users\r\n1,2\r\n2,1\r\n" + b"".join(f"{k},0\r\n".encode() for k in range(3, 12))


def invalid(field: str) -> bytes:
    return f'{{"success":false,"error":"Match error: Failed Match.Where validation in field {field}"}}'.encode()


def missing(field: str) -> bytes:
    return f'{{"success":false,"error":"Match error: Missing key \'{field}\'"}}'.encode()


@pytest.mark.parametrize("path", [RETENTION, STICKINESS])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("format=xml", missing("start")),  # the dates first
        (f"format=xml&start={V1}", missing("end")),
        (f"format=xml&end={V2}&start=bad", invalid("start")),
        (f"start={V1}&end={V2}&format=xml", invalid("format")),
        (f"start={V1}&end={V2}&format=csv&format=csv", invalid("format")),
        (f"start={V1}&end={V2}&format=", invalid("format")),
    ],
)
async def test_errors_common_to_both(api, admin, path, query, expected) -> None:
    answer = await api.get(f"{path}?{query}", admin)
    assert (answer.status, answer.body) == (400, expected)
    assert answer.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("period=year", "period"),
        ("period=Week", "period"),
        ("period=week&period=week", "period"),
        ("cohort=all", "cohort"),
        ("cohort=", "cohort"),
        ("periods=401", "periods"),
        ("periods=-1", "periods"),
        ("periods=1.5", "periods"),
        ("periods=012", "periods"),
        ("periods=+3", "periods"),
        ("periods=3&periods=3", "periods"),
        ("cohort=new&periods=x&period=year", "periods"),  # first invalid in the query's order
    ],
)
async def test_retention_parameter_errors(api, admin, extra, field) -> None:
    answer = await api.get(f"{RETENTION}?start={V1}&end={V2}&{extra}", admin)
    assert (answer.status, answer.body) == (400, invalid(field))


async def test_retention_defaults_and_unknown_parameters(api, admin, seed_users) -> None:
    seed_users(active={(date(2026, 3, 2), 1): {"a"}})
    plain = body(await api.get(f"{RETENTION}?start={V1}&end={V2}", admin))
    explicit = body(await api.get(f"{RETENTION}?start={V1}&end={V2}&period=week&cohort=first&periods=12&x=1", admin))
    assert plain == explicit and (plain["period"], plain["cohort"]) == ("week", "first")
    assert body(await api.get(f"{RETENTION}?start={V1}&end={V2}&periods=0", admin))["cohorts"][1]["returned"] == [1]
    nothing = body(await api.get(f"{RETENTION}?start={V2}&end={V1}", admin))
    assert nothing == {
        "timezone": "UTC",
        "period": "week",
        "cohort": "first",
        "start": None,
        "end": None,
        "cohorts": [],
    }
