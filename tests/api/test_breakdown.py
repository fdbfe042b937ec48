"""``GET /api/v1/active-users/breakdown`` and the ``segment`` parameter of the summary, stickiness and retention, on
the index written by the consumer's real writer (values registered by its registry script), against the
brute-force oracle of ``tests/support/segments.py`` and ``cohorts.py``: users on two values in one day, the cap
and ``(other)``, an unknown value, the CSV form and every parameter error in the contract's order. (401/403 and
the dates' errors of every data route are in test_users_tab.py, enumerated from the router.)"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import orjson
import pytest

from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from api.routes.breakdown import PATH
from api.routes.retention import RETENTION, STICKINESS
from tests.support import cohorts, segments

TODAY = date(2026, 3, 15)  # conftest's NOW
NOW_MS = 1_773_576_000_000
SUMMARY = "/api/v1/active-users/summary"
V1, V2 = "2026-03-01T00:00:00.000Z", "2026-03-15T23:59:59.999Z"
PLATFORMS = ("web", "ios", "android", "desktop", "linux")


def iso(day: date, end: bool = False) -> str:
    return f"{day.isoformat()}T{'23:59:59.999' if end else '00:00:00.000'}Z"


def days_of(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def body(answer: Any) -> dict[str, Any]:
    assert answer.status == 200, answer.body
    found: dict[str, Any] = orjson.loads(answer.body)
    assert found.pop("success") is True
    return found


@pytest.fixture
def write(base_settings, redis_client):
    """``write({(day, user): values}, max_values=...)``: each user active on its day with events of those platforms."""

    def store(events: dict[tuple[date, str], set[str]], **overrides: Any) -> None:
        settings = replace(base_settings, retention_days=5000, **overrides)
        sets = UserSets()
        for (day, user), values in events.items():
            sets.add_active(day, 10, user, NOW_MS)
            for value in values:
                sets.add_segment(day, user, "platform", value)
        ActivityWriter.of(redis_client, settings).write(sets)

    return store


@pytest.fixture
def data(write) -> tuple[dict[date, set[str]], dict[tuple[date, str], set[str]]]:
    rng = random.Random(26)
    people = [f"p{i:03d}" for i in range(120)]
    events: dict[tuple[date, str], set[str]] = {}
    for offset in range(-1, 75):
        day = TODAY - timedelta(days=offset)
        for user in rng.sample(people, rng.randint(0, 40)):
            picked = set(rng.sample(PLATFORMS, 2 if rng.random() < 0.15 else 1))
            events[(day, user)] = picked if rng.random() < 0.9 else set()  # some events without a platform
    write(events)
    active: dict[date, set[str]] = {}
    values: dict[tuple[date, str], set[str]] = {}
    for (day, user), picked in events.items():
        active.setdefault(day, set()).add(user)
        for value in picked:
            values.setdefault((day, value), set()).add(user)
    return active, values


@pytest.mark.parametrize(
    ("first", "last"), [(date(2026, 2, 14), date(2026, 3, 15)), (date(2026, 3, 1), date(2026, 3, 16)), (TODAY, TODAY)]
)
async def test_breakdown_equals_the_oracle(api, admin, data, first, last) -> None:
    _, values = data
    found = body(await api.get(f"{PATH}?start={iso(first)}&end={iso(last, True)}&property=platform", admin))
    assert found == segments.breakdown(values, days_of(first, last))
    assert [row["value"] for row in found["values"]] and all(
        len(row["days"]) == len(days_of(first, last)) for row in found["values"]
    )


@pytest.mark.parametrize("value", ["ios", "web", "desktop"])
async def test_segmented_summary_stickiness_and_retention_equal_the_oracle(api, admin, data, value) -> None:
    active, values = data
    inside = segments.in_value(values, value)
    first, last = date(2026, 2, 10), date(2026, 3, 15)
    range_ = f"start={iso(first)}&end={iso(last, True)}&segment=platform:{value}"
    assert body(await api.get(f"{SUMMARY}?{range_}", admin)) == segments.summary(inside, days_of(first, last))
    assert body(await api.get(f"{STICKINESS}?{range_}", admin)) == cohorts.stickiness(inside, days_of(first, last))
    stored = (TODAY - timedelta(days=399), TODAY + timedelta(days=1))
    for period, cohort in (("week", "first"), ("week", "active"), ("day", "first"), ("month", "active")):
        found = body(await api.get(f"{RETENTION}?{range_}&period={period}&cohort={cohort}", admin))
        expected = cohorts.retention(active, {}, days_of(first, last), stored, TODAY, period, cohort, segment=inside)
        assert found == expected


async def test_a_user_on_two_platforms_in_one_day_is_in_both(api, admin, write) -> None:
    write({(TODAY, "both"): {"ios", "web"}, (TODAY, "one"): {"web"}})
    found = body(await api.get(f"{PATH}?start={iso(TODAY)}&end={iso(TODAY, True)}&property=platform", admin))
    assert [(row["value"], row["distinctUsers"], row["days"][0]["dau"]) for row in found["values"]] == [
        ("web", 2, 2),
        ("ios", 1, 1),
    ]
    summary = body(await api.get(f"{SUMMARY}?start={iso(TODAY)}&end={iso(TODAY, True)}&segment=platform:ios", admin))
    assert summary["distinctUsers"] == 1 and summary["days"][0]["dau"] == 1
    total = body(await api.get(f"{SUMMARY}?start={iso(TODAY)}&end={iso(TODAY, True)}", admin))
    assert total["distinctUsers"] == 2


async def test_values_past_the_cap_are_other_and_an_unknown_value_gives_zeros(api, admin, write) -> None:
    write({(TODAY, "a"): {"v1"}}, segment_max_values=2)
    write({(TODAY, "b"): {"v2"}}, segment_max_values=2)
    write({(TODAY, "c"): {"v3"}, (TODAY, "d"): {"v4", "v1"}}, segment_max_values=2)
    day = f"start={iso(TODAY)}&end={iso(TODAY, True)}"
    found = body(await api.get(f"{PATH}?{day}&property=platform", admin))
    assert [(row["value"], row["distinctUsers"]) for row in found["values"]] == [("(other)", 2), ("v1", 2), ("v2", 1)]
    other = body(await api.get(f"{SUMMARY}?{day}&segment=platform:(other)", admin))
    assert other["distinctUsers"] == 2
    for unknown in ("v3", "nothing", "V1"):
        zeros = body(await api.get(f"{SUMMARY}?{day}&segment=platform:{unknown}", admin))
        assert zeros["distinctUsers"] == 0 and zeros["days"][0] == {
            "date": TODAY.isoformat(),
            "dau": 0,
            "wau": 0,
            "mau": 0,
        }
    sticky = body(await api.get(f"{STICKINESS}?{day}&segment=platform:nothing", admin))
    assert sticky["distinctUsers"] == 0


async def test_a_value_with_a_colon_splits_at_the_first(api, admin, write) -> None:
    write({(TODAY, "a"): {"mac:os"}})
    day = f"start={iso(TODAY)}&end={iso(TODAY, True)}"
    assert body(await api.get(f"{SUMMARY}?{day}&segment=platform:mac:os", admin))["distinctUsers"] == 1


async def test_the_csv_form_and_an_empty_range(api, admin, write) -> None:
    write({(TODAY, "a"): {"web"}, (TODAY, "b"): {"ios"}, (TODAY - timedelta(days=1), "a"): {"a,b"}})
    answer = await api.get(
        f"{PATH}?start={iso(TODAY - timedelta(days=1))}&end={V2}&property=platform&format=csv", admin
    )
    assert answer.status == 200 and answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-store" and answer.headers["Pragma"] == "no-cache"
    assert answer.body == (
        b'date,value,dau\r\n2026-03-14,"a,b",1\r\n2026-03-14,ios,0\r\n2026-03-14,web,0\r\n'
        b'2026-03-15,"a,b",0\r\n2026-03-15,ios,1\r\n2026-03-15,web,1\r\n'
    )
    empty = body(await api.get(f"{PATH}?start={V2}&end={V1}&property=platform", admin))
    assert empty == {"timezone": "UTC", "start": None, "end": None, "property": "platform", "values": []}


def invalid(field: str) -> bytes:
    return f'{{"success":false,"error":"Match error: Failed Match.Where validation in field {field}"}}'.encode()


def missing(field: str) -> bytes:
    return f'{{"success":false,"error":"Match error: Missing key \'{field}\'"}}'.encode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("property=platform", missing("start")),  # the dates first
        ("property=country&start=" + V1, missing("end")),
        (f"start={V1}&end={V2}", missing("property")),
        (f"start={V1}&end={V2}&property=country", invalid("property")),
        (f"start={V1}&end={V2}&property=", invalid("property")),
        (f"start={V1}&end={V2}&property=platform&property=platform", invalid("property")),
        (f"start={V1}&end={V2}&property=platform&format=xml", invalid("format")),
        (f"start={V1}&end={V2}&format=xml", invalid("format")),
    ],
)
async def test_breakdown_errors(api, admin, query, expected) -> None:
    answer = await api.get(f"{PATH}?{query}", admin)
    assert (answer.status, answer.body) == (400, expected)


@pytest.mark.parametrize("path", [SUMMARY, STICKINESS, RETENTION])
@pytest.mark.parametrize(
    "segment",
    ["platform", "platform:", ":ios", ":", "country:ios", "segment=platform:ios&segment=platform:ios", ""],
)
async def test_segment_errors(api, admin, path, segment) -> None:
    query = segment if segment.startswith("segment=") else f"segment={segment}"
    answer = await api.get(f"{path}?start={V1}&end={V2}&{query}", admin)
    assert (answer.status, answer.body) == (400, invalid("segment"))
    dates_first = await api.get(f"{path}?{query}&start=bad&end={V2}", admin)
    assert (dates_first.status, dates_first.body) == (400, invalid("start"))


async def test_another_indexed_property(make_api, base_settings, redis_client) -> None:
    settings = replace(base_settings, segment_properties="platform,country", retention_days=5000)
    sets = UserSets()
    sets.add_active(TODAY, 1, "x", NOW_MS)
    sets.add_segment(TODAY, "x", "country", "DE")
    ActivityWriter.of(redis_client, settings).write(sets)
    api = await make_api(segment_properties="platform,country")
    admin = await api.token("admin-user-1")
    day = f"start={iso(TODAY)}&end={iso(TODAY, True)}"
    found = body(await api.get(f"{PATH}?{day}&property=country", admin))
    assert [(row["value"], row["distinctUsers"]) for row in found["values"]] == [("DE", 1)]
    assert body(await api.get(f"{PATH}?{day}&property=platform", admin))["values"] == []
    assert body(await api.get(f"{STICKINESS}?{day}&segment=country:DE", admin))["activeDays"] == [1]


async def test_no_indexed_property_refuses_every_property_and_segment(make_api) -> None:
    api = await make_api(segment_properties="none")
    admin = await api.token("admin-user-1")
    answer = await api.get(f"{PATH}?start={V1}&end={V2}&property=platform", admin)
    assert (answer.status, answer.body) == (400, invalid("property"))
    answer = await api.get(f"{SUMMARY}?start={V1}&end={V2}&segment=platform:ios", admin)
    assert (answer.status, answer.body) == (400, invalid("segment"))
