"""GET /api/v1/active-users/summary on seeded data, against a brute-force oracle of the rolling windows."""

from __future__ import annotations

import random
from datetime import date, timedelta

import orjson
import pytest

PATH = "/api/v1/active-users/summary"
TODAY = date(2026, 3, 15)


def iso(day: date, end: bool = False) -> str:
    return f"{day.isoformat()}T{'23:59:59.999' if end else '00:00:00.000'}Z"


def url(first: date, last: date, extra: str = "") -> str:
    return f"{PATH}?start={iso(first)}&end={iso(last, end=True)}{extra}"


def union(sets: dict[date, set[str]], first: date, last: date) -> set[str]:
    found: set[str] = set()
    for offset in range((last - first).days + 1):
        found |= sets.get(first + timedelta(days=offset), set())
    return found


def oracle_rows(sets: dict[date, set[str]], first: date, last: date) -> list[dict[str, object]]:
    rows = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        rows.append(
            {
                "date": day.isoformat(),
                "dau": len(sets.get(day, set())),
                "wau": len(union(sets, day - timedelta(days=6), day)),
                "mau": len(union(sets, day - timedelta(days=29), day)),
            }
        )
    return rows


@pytest.fixture
def seeded(seed) -> dict[date, set[str]]:
    rng = random.Random(4)
    population = [f"user-{i:03d}" for i in range(120)]
    sets = {}
    for offset in range(90):
        day = TODAY - timedelta(days=offset)
        if rng.random() < 0.15:
            continue  # some days without anyone
        sets[day] = set(rng.sample(population, rng.randint(1, 40)))
    seed(sets)
    return sets


async def test_summary_matches_the_oracle(api, admin, seeded):
    first, last = TODAY - timedelta(days=40), TODAY - timedelta(days=3)
    answer = await api.get(url(first, last), admin)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Pragma"] == "no-cache"
    want = {
        "timezone": "UTC",
        "start": first.isoformat(),
        "end": last.isoformat(),
        "distinctUsers": len(union(seeded, first, last)),
        "days": oracle_rows(seeded, first, last),
        "success": True,
    }
    assert answer.body == orjson.dumps(want)


async def test_windows_reach_back_before_start(api, admin, seed):
    seed({TODAY - timedelta(days=29): {"a"}, TODAY - timedelta(days=6): {"b"}, TODAY: {"c"}})
    answer = await api.get(url(TODAY, TODAY), admin)
    assert answer.json()["days"] == [{"date": TODAY.isoformat(), "dau": 1, "wau": 2, "mau": 3}]
    assert answer.json()["distinctUsers"] == 1


async def test_csv(api, admin, seed):
    seed({TODAY - timedelta(days=1): {"a", "b"}, TODAY: {"b"}})
    answer = await api.get(url(TODAY - timedelta(days=2), TODAY, "&format=csv"), admin)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.body == b"date,dau,wau,mau\r\n2026-03-13,0,0,0\r\n2026-03-14,2,2,2\r\n2026-03-15,1,2,2\r\n"


async def test_explicit_json_format(api, admin):
    assert (await api.get(url(TODAY, TODAY, "&format=json"), admin)).json()["success"] is True


@pytest.mark.parametrize(
    ("extra", "field"),
    [("&format=xml", "format"), ("&format=csv&format=csv", "format"), ("&format=", "format")],
)
async def test_bad_format_is_400(api, admin, extra, field):
    answer = await api.get(url(TODAY, TODAY, extra), admin)
    assert answer.status == 400
    assert (
        answer.body
        == f'{{"success":false,"error":"Match error: Failed Match.Where validation in field {field}"}}'.encode()
    )


async def test_same_checks_as_active_users(api, admin):
    plain = await api.token("plain-user-2", permissions=())
    login = b'{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}'  # noqa: E501
    assert (await api.get(PATH + "?start=bad")).body == login
    assert (await api.get(PATH + "?start=bad", plain)).status == 403
    assert (await api.get(PATH + "?end=bad&start=bad", admin)).body == (
        b'{"success":false,"error":"Match error: Failed Match.Where validation in field end"}'
    )
    assert (await api.get(PATH + f"?end={iso(TODAY)}", admin)).body == (
        b'{"success":false,"error":"Match error: Missing key \'start\'"}'
    )


async def test_reversed_range(api, admin, seeded):
    answer = await api.get(f"{PATH}?start={iso(TODAY)}&end={iso(TODAY - timedelta(days=5))}", admin)
    assert answer.body == b'{"timezone":"UTC","start":null,"end":null,"distinctUsers":0,"days":[],"success":true}'


async def test_huge_range_is_clipped_to_the_retention_window(make_api, seed, store_reads):
    app = await make_api(retention_days=20)
    headers = await app.token("admin-user-1")
    sets = {TODAY - timedelta(days=100): {"expired"}, TODAY - timedelta(days=19): {"old"}, TODAY: {"now"}}
    seed(sets)
    answer = await app.get(f"{PATH}?start=0000-01-01T00:00:00.000Z&end=9999-12-31T23:59:59.999Z", headers)
    body = answer.json()
    oldest, newest = TODAY - timedelta(days=20), TODAY + timedelta(days=1)
    assert (body["start"], body["end"]) == (oldest.isoformat(), newest.isoformat())
    assert len(body["days"]) == 22
    assert body["distinctUsers"] == 2
    # Counts come from the index's counters and unions: no id is listed, and no bitmap outside the window is read.
    assert store_reads.listed == []
    assert all(oldest <= day <= newest for day in store_reads.fetched)


async def test_dst_zone_days(make_api, seed):
    ny = await make_api(activity_timezone="America/New_York")
    headers = await ny.token("admin-user-1")
    seed({date(2026, 3, 7): {"a"}, date(2026, 3, 8): {"b"}, date(2026, 3, 9): {"a", "c"}}, "America/New_York")
    answer = await ny.get(f"{PATH}?start=2026-03-08T05:00:00.000Z&end=2026-03-10T03:59:59.999Z", headers)
    body = answer.json()
    assert body["timezone"] == "America/New_York"
    assert body["days"] == [
        {"date": "2026-03-08", "dau": 1, "wau": 2, "mau": 2},
        {"date": "2026-03-09", "dau": 2, "wau": 3, "mau": 3},
    ]
    assert body["distinctUsers"] == 3
