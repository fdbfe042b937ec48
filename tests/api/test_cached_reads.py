"""The day cache behind active-users, on the real Redis: a day's element is read from its bitmaps (and the names
lists) only when its index version changed; a late event, a day leaving retention, the age limit, the byte budget,
the cache turned off, a new process, concurrent requests learning the names lists, an index whose names list is
missing, a Redis that lost everything; answers byte-identical with and without the cache; the summary lists no id
at all."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import date, timedelta

import orjson
import pytest

from activeusers import reader as reader_module
from activeusers.days import retained_days
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema, bucket_of
from activeusers.reader import ActivityReader
from api import app as app_module
from api.daycache import DayCache
from api.state import ACTIVITY

ACTIVE = "/api/v1/engagement-dashboard/users/active-users"
SUMMARY = "/api/v1/active-users/summary"
WEEKLY = "/api/v1/engagement-dashboard/users/chat-busier/weekly-data"
TODAY = date(2026, 3, 15)
UNAVAILABLE = b'{"success":false,"error":"Service unavailable: the data store cannot be reached. Try again shortly."}'


def iso(day: date, end: bool = False) -> str:
    return f"{day.isoformat()}T{'23:59:59.999' if end else '00:00:00.000'}Z"


def url(path: str, first: date, last: date) -> str:
    return f"{path}?start={iso(first)}&end={iso(last, end=True)}"


def days_of(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def expected(sets: dict[date, set[str]], first: date, last: date) -> bytes:
    month = [
        {"usersList": sorted(users), "users": len(users), "day": d.day, "month": d.month, "year": d.year}
        for d, users in sorted(sets.items(), reverse=True)
        if users and first <= d <= last
    ]
    return orjson.dumps({"month": month, "success": True})


def versions(redis_client, keys: KeySchema, days: list[date]) -> dict[date, str | None]:
    """The days' index versions as the writer left them."""
    found = redis_client.hmget(keys.versions(), [keys.day_field(day) for day in days])
    return dict(zip(days, found, strict=True))


async def test_second_answer_comes_from_the_cache(api, admin, seed, store_reads):
    sets = {TODAY - timedelta(days=1): {"a", "b"}, TODAY: {"c"}}
    seed(sets)
    first_day = TODAY - timedelta(days=6)
    path = url(ACTIVE, first_day, TODAY)
    first = await api.get(path, admin)
    # Every day of the range is read once (one round of bitmaps), those without data too.
    assert store_reads.listings == [days_of(first_day, TODAY)]
    assert sorted(store_reads.fetched) == days_of(first_day, TODAY)
    store_reads.clear()
    second = await api.get(path, admin)
    # Versions unchanged: no bitmap is read, no id listed.
    assert store_reads.listings == [] and store_reads.fetched == []
    assert first.body == second.body == expected(sets, first_day, TODAY)
    # An entry per day (the two with users and the five kept empty), today's listing (its sorted ids) and the
    # whole answer of the 7-day range.
    assert len(api.client.app[ACTIVITY].cache) == 9


async def test_today_names_only_the_bits_set_since_its_last_listing(
    api, admin, seed, store_reads, redis_client, redis_prefix, monkeypatch
):
    first_day = TODAY - timedelta(days=1)
    path = url(ACTIVE, first_day, TODAY)
    today = {f"t{n:03d}" for n in range(120)}
    seed({first_day: {"y1", "y2"}, TODAY: today})
    assert (await api.get(path, admin)).body == expected({first_day: {"y1", "y2"}, TODAY: today}, first_day, TODAY)
    named: list[int] = []
    real_ids_of = ActivityReader.ids_of

    def ids_of(self: ActivityReader, bucket: int, bitmap: bytes) -> list[str]:
        found = real_ids_of(self, bucket, bitmap)
        named.append(len(found))
        return found

    monkeypatch.setattr(ActivityReader, "ids_of", ids_of)
    for batch in ({"new-1", "t005"}, {"a-new", "zz-new", "m-new"}):  # new users (anywhere in the order), old ones
        seed({TODAY: batch})
        today |= batch
        named.clear()
        store_reads.clear()
        answer = await api.get(path, admin)
        assert answer.body == expected({first_day: {"y1", "y2"}, TODAY: today}, first_day, TODAY)
        assert store_reads.listings == [[TODAY]]
        assert sum(named) == len(batch - {"t005"})  # only the bits set since were named, not the day's 120 others
    # Bits gone (Redis lost the day, which then starts again): the day is listed whole, not from its old listing.
    keys = KeySchema(redis_prefix, "UTC")
    redis_client.delete(*(keys.day_bits(TODAY, bucket) for bucket in range(keys.buckets)))
    seed({TODAY: {"after-loss"}})
    answer = await api.get(path, admin)
    assert answer.body == expected({first_day: {"y1", "y2"}, TODAY: {"after-loss"}}, first_day, TODAY)


async def test_a_late_event_on_a_past_day_reads_that_day_alone_again(
    api, admin, seed, store_reads, redis_client, redis_prefix
):
    past = TODAY - timedelta(days=2)
    first_day = TODAY - timedelta(days=3)
    seed({past: {"old"}, TODAY: {"a"}})
    path = url(ACTIVE, first_day, TODAY)
    keys = KeySchema(redis_prefix, "UTC")
    await api.get(path, admin)
    before = versions(redis_client, keys, days_of(first_day, TODAY))
    store_reads.clear()
    seed({past: {"late"}})  # what the consumer does with a late event: the day's bit set, its version replaced
    after = versions(redis_client, keys, days_of(first_day, TODAY))
    assert [day for day in before if before[day] != after[day]] == [past]
    answer = await api.get(path, admin)
    assert answer.body == expected({past: {"late", "old"}, TODAY: {"a"}}, first_day, TODAY)
    # Only the day whose version changed was read again, and it now lists the new id.
    assert store_reads.listings == [[past]]
    assert store_reads.fetched == [past]


async def test_a_day_that_leaves_the_retention_window_is_left_out(make_api, seed, now_ms, store_reads):
    clock = [now_ms / 1000]
    app = await make_api(clock=lambda: clock[0], retention_days=3)
    headers = await app.token("admin-user-1")
    oldest, _ = retained_days(now_ms, app.settings.zone, 3)
    seed({oldest: {"x"}, TODAY: {"y"}})
    path = url(ACTIVE, oldest, TODAY)
    assert (await app.get(path, headers)).body == expected({oldest: {"x"}, TODAY: {"y"}}, oldest, TODAY)
    clock[0] += 86_400  # a day later: its bitmaps still exist and its element is still cached, but it expired
    store_reads.clear()
    later = await app.get(path, headers)
    assert later.body == expected({TODAY: {"y"}}, oldest, TODAY)
    assert oldest not in store_reads.listed


async def test_entries_older_than_the_ttl_are_read_again(make_api, seed, store_reads, monkeypatch):
    now = [5000.0]

    def cache_with_clock(max_bytes: int, ttl_s: float) -> DayCache:
        return DayCache(max_bytes, ttl_s, lambda: now[0])

    monkeypatch.setattr(app_module, "DayCache", cache_with_clock)
    app = await make_api(api_cache_ttl_s=60.0)
    headers = await app.token("admin-user-1")
    seed({TODAY: {"a"}})
    path = url(ACTIVE, TODAY, TODAY)
    await app.get(path, headers)
    now[0] += 59.9
    await app.get(path, headers)
    assert store_reads.listed == [TODAY]
    now[0] += 0.1
    answer = await app.get(path, headers)
    assert store_reads.listed == [TODAY, TODAY]
    assert answer.body == expected({TODAY: {"a"}}, TODAY, TODAY)


async def test_the_byte_budget_evicts(make_api, seed, store_reads):
    # Room for about one 1000-user day's fragment (~10 kB) at a time.
    app = await make_api(api_cache_bytes=15_000)
    headers = await app.token("admin-user-1")
    older, newer = TODAY - timedelta(days=1), TODAY
    seed({older: {f"old-{i:04d}" for i in range(1000)}, newer: {f"new-{i:04d}" for i in range(1000)}})
    for day in (older, newer, older):
        await app.get(url(ACTIVE, day, day), headers)
    assert store_reads.listings == [[older], [newer], [older]]
    cache = app.client.app[ACTIVITY].cache
    assert len(cache) == 1
    assert cache.size_bytes <= 15_000


async def test_zero_bytes_reads_every_time(make_api, seed, store_reads):
    app = await make_api(api_cache_bytes=0)
    headers = await app.token("admin-user-1")
    seed({TODAY: {"a"}})
    for path in (url(ACTIVE, TODAY, TODAY), url(SUMMARY, TODAY, TODAY)):
        await app.get(path, headers)
        await app.get(path, headers)
    assert store_reads.listed == [TODAY] * 2
    assert len(app.client.app[ACTIVITY].cache) == 0


async def test_summary_lists_no_ids_and_sees_growth(api, admin, seed, store_reads):
    seed({TODAY - timedelta(days=40): {"a"}, TODAY - timedelta(days=10): {"a", "b"}, TODAY: {"c"}})
    path = url(SUMMARY, TODAY - timedelta(days=10), TODAY)
    first = (await api.get(path, admin)).json()
    assert (await api.get(path, admin)).json() == first
    seed({TODAY: {"d"}})
    after = (await api.get(path, admin)).json()
    assert store_reads.listed == []  # counted from the index's bitmaps and counters
    assert after["distinctUsers"] == first["distinctUsers"] + 1 == 4
    assert after["days"][-1] == {"date": TODAY.isoformat(), "dau": 2, "wau": 2, "mau": 4}


async def test_a_new_process_answers_identically(make_api, seed, store_reads):
    rng = random.Random(15)
    sets = {TODAY - timedelta(days=n): {f"u{rng.randrange(3000)}" for _ in range(200)} for n in range(0, 90, 3)}
    seed(sets)
    first_day = TODAY - timedelta(days=100)
    path = url(ACTIVE, first_day, TODAY)
    one = await make_api()
    headers = await one.token("admin-user-1")
    answer = await one.get(path, headers)
    assert answer.body == expected(sets, first_day, TODAY)
    assert (await one.get(path, headers)).body == answer.body
    listed = store_reads.listed
    store_reads.clear()
    # Another API process: its own (empty) cache and its own copy of the names lists, the same bytes.
    other = await make_api()
    assert (await other.get(path, headers)).body == answer.body
    assert store_reads.listed == listed
    assert set(sets) <= set(listed)


async def test_concurrent_requests_learn_the_names_lists_together(make_api, seed, monkeypatch):
    """Requests of one process that fetch overlapping parts of the names lists at the same time (in chunks of 7
    ids) each answer exactly, and the process ends up holding each id once."""
    monkeypatch.setattr(reader_module, "NAMES_CHUNK", 7)
    rng = random.Random(3)
    sets = {TODAY - timedelta(days=n): {f"u{rng.randrange(400)}" for _ in range(60)} for n in range(10)}
    seed(sets)
    app = await make_api()
    headers = await app.token("admin-user-1")
    ranges = [(TODAY - timedelta(days=n), TODAY - timedelta(days=n // 2)) for n in range(10)]
    answers = await asyncio.gather(*(app.get(url(ACTIVE, first, last), headers) for first, last in ranges))
    assert [answer.body for answer in answers] == [expected(sets, first, last) for first, last in ranges]
    numbered = set().union(*sets.values())
    assert app.client.app[ACTIVITY].reader.names_known == len(numbered)


async def test_an_index_without_its_names_list_answers_503(make_api, seed, redis_client, redis_prefix, caplog):
    seed({TODAY - timedelta(days=1): {"a", "b", "c"}, TODAY: {"a"}})
    keys = KeySchema(redis_prefix, "UTC")
    assert bucket_of("a", keys.buckets) != bucket_of("b", keys.buckets)
    # A bucket whose numbers have no ids: a list removed by hand, or an index numbered before the lists existed
    # and not yet reindexed.
    redis_client.delete(keys.names(bucket_of("b", keys.buckets)))
    app = await make_api()
    headers = await app.token("admin-user-1")
    caplog.set_level(logging.WARNING, logger="api.errors")
    answer = await app.get(url(ACTIVE, TODAY - timedelta(days=6), TODAY), headers)
    assert (answer.status, answer.body) == (503, UNAVAILABLE)
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["Content-Type"] == "application/json"
    (logged,) = [r for r in caplog.records if r.getMessage() == "store unavailable"]
    assert keys.names(bucket_of("b", keys.buckets)) in logged.error and "active-users reindex" in logged.error
    # A day without the bucket's users still answers, and the counting endpoints need no ids.
    assert (await app.get(url(ACTIVE, TODAY, TODAY), headers)).body == expected({TODAY: {"a"}}, TODAY, TODAY)
    weekly = await app.get(f"{WEEKLY}?start={iso(TODAY)}", headers)
    assert weekly.status == 200 and weekly.json()["month"][0]["users"] == 1


async def test_after_redis_lost_everything_the_new_ids_are_listed(api, admin, seed, redis_client, redis_prefix, caplog):
    """A Redis restarted without persistence, then a replay: the users are numbered anew, and the process drops
    the ids it held of the lists made again (no restart of the API)."""
    keys = KeySchema(redis_prefix, "UTC")
    # A new user in the old one's bucket: numbered 0 there again, as the old one was.
    newcomer = next(
        f"new-{n}" for n in range(1000) if bucket_of(f"new-{n}", keys.buckets) == bucket_of("alice", keys.buckets)
    )
    seed({TODAY: {"alice"}})
    path = url(ACTIVE, TODAY, TODAY)
    assert (await api.get(path, admin)).body == expected({TODAY: {"alice"}}, TODAY, TODAY)
    tokens = redis_client.hgetall(keys.tokens())
    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        redis_client.delete(key)
    redis_client.hset(keys.tokens(), mapping=tokens)  # the token issued again
    seed({TODAY: {newcomer}})  # numbered anew from 0, a new version
    caplog.set_level(logging.WARNING, logger="activeusers.reader")
    assert (await api.get(path, admin)).body == expected({TODAY: {newcomer}}, TODAY, TODAY)
    (dropped,) = [r for r in caplog.records if r.getMessage() == "user ids read again"]
    assert dropped.key == keys.names(bucket_of("alice", keys.buckets))


async def test_answers_with_and_without_the_cache_are_byte_identical(make_api, seed, redis_client, redis_prefix):
    cached = await make_api(retention_days=60)
    uncached = await make_api(retention_days=60, api_cache_bytes=0)
    headers = await cached.token("admin-user-1")
    keys = KeySchema(redis_prefix, "UTC")
    rng = random.Random(20260315)
    truth: dict[date, set[str]] = {}
    for _ in range(25):
        # Random growth (what the consumer does), now and then an expired day, then random ranges of both kinds.
        growth: dict[date, set[str]] = {}
        for _ in range(rng.randint(0, 6)):
            day = TODAY - timedelta(days=rng.randint(-1, 70))
            growth.setdefault(day, set()).update(f"u{rng.randint(0, 40)}" for _ in range(rng.randint(1, 5)))
        seed(growth)
        for day, users in growth.items():
            truth.setdefault(day, set()).update(users)
        if truth and rng.random() < 0.2:
            gone = rng.choice(sorted(truth))
            redis_client.delete(*(keys.day_bits(gone, b) for b in range(keys.buckets)))
            # Removing a day's bitmaps by hand also removes its index version (docs/keys.md), as expiry needs not:
            # a day past retention is never asked for.
            redis_client.hdel(keys.versions(), keys.day_field(gone))
            del truth[gone]
        for _ in range(3):
            first = TODAY - timedelta(days=rng.randint(-1, 70))
            last = first + timedelta(days=rng.randint(0, 40))
            summary = url(SUMMARY, first, last)
            for path in (url(ACTIVE, first, last), summary, summary + "&format=csv"):
                mine, theirs = await cached.get(path, headers), await uncached.get(path, headers)
                assert (mine.status, mine.body) == (theirs.status, theirs.body), path
            retained = {d: u for d, u in truth.items() if d >= TODAY - timedelta(days=60)}
            assert (await cached.get(url(ACTIVE, first, last), headers)).body == expected(retained, first, last)


async def test_a_new_process_takes_the_points_another_one_computed(make_api, seed, redis_client, redis_prefix):
    """The summary's points are shared through Redis, each valid while the versions of its window's days hold:
    a point kept there (here altered, to tell it from a computed one) is served by a new process, until a write
    to a day of its windows."""
    seed({TODAY - timedelta(days=3): {"a", "b"}, TODAY - timedelta(days=1): {"b", "c"}})
    first = await make_api()
    headers = await first.token("admin-user-1")
    path = url(SUMMARY, TODAY - timedelta(days=2), TODAY - timedelta(days=1))
    computed = (await first.get(path, headers)).json()
    assert [(d["date"], d["dau"], d["wau"]) for d in computed["days"]] == [
        ((TODAY - timedelta(days=2)).isoformat(), 0, 2),
        ((TODAY - timedelta(days=1)).isoformat(), 2, 3),
    ]
    keys = KeySchema(redis_prefix, "UTC")
    points, field = keys.derived(), keys.derived_field("point", TODAY - timedelta(days=2))
    digest, *_ = redis_client.hget(points, field).split(" ")
    redis_client.hset(points, field, f"{digest} 7 7 7")
    second = await make_api()
    shared = (await second.get(path, headers)).json()
    assert shared["days"][0] == {"date": (TODAY - timedelta(days=2)).isoformat(), "dau": 7, "wau": 7, "mau": 7}
    assert shared["days"][1] == computed["days"][1] and shared["distinctUsers"] == 2
    seed({TODAY - timedelta(days=4): {"d"}})  # a day inside both points' windows: new versions, new digests
    third = (await (await make_api()).get(path, headers)).json()
    assert [(d["dau"], d["wau"], d["mau"]) for d in third["days"]] == [(0, 3, 3), (2, 4, 4)]
    assert redis_client.hget(points, field).split(" ")[1:] == ["0", "3", "3"]


async def test_values_that_cannot_be_shared_still_answer(make_api, seed, monkeypatch, caplog):
    seed({TODAY: {"a"}})
    api = await make_api()
    headers = await api.token("admin-user-1")

    async def refused(self, kind, values):
        raise StoreUnavailable("NOPERM this user has no permissions to run the 'hset' command")

    monkeypatch.setattr(ActivityReader, "keep_derived", refused)
    answer = (await api.get(url(SUMMARY, TODAY, TODAY), headers)).json()
    assert answer["days"] == [{"date": TODAY.isoformat(), "dau": 1, "wau": 1, "mau": 1}]
    weekly = (await api.get(f"{WEEKLY}?start={iso(TODAY)}", headers)).json()
    assert weekly["month"][0]["users"] == 1
    refusals = [r for r in caplog.records if r.getMessage() == "derived values not shared" and "NOPERM" in r.error]
    assert sorted(r.kind for r in refusals) == ["counters", "point"]


def summary_oracle(sets: dict[date, set[str]], first: date, last: date) -> dict:
    def union(a: date, b: date) -> set[str]:
        return set().union(*(users for day, users in sets.items() if a <= day <= b))

    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    points = [
        {
            "date": d.isoformat(),
            "dau": len(sets.get(d, ())),
            "wau": len(union(d - timedelta(days=6), d)),
            "mau": len(union(d - timedelta(days=29), d)),
        }
        for d in days
    ]
    return {"distinctUsers": len(union(first, last)), "days": points}


async def test_a_write_today_recomputes_todays_point_from_its_window_only(
    api, admin, seed, make_api, redis_client, monkeypatch: pytest.MonkeyPatch
):
    rng = random.Random(7)
    sets = {TODAY - timedelta(days=n): {f"u{rng.randrange(30)}" for _ in range(5)} for n in range(50)}
    seed(sets)
    path = url(SUMMARY, TODAY - timedelta(days=34), TODAY)
    first = (await api.get(path, admin)).json()
    assert {k: first[k] for k in ("distinctUsers", "days")} == summary_oracle(sets, TODAY - timedelta(days=34), TODAY)
    fetched: list[date] = []
    original = ActivityReader.day_bitmaps

    async def spied(self, days, kind="day"):
        fetched.extend(days)
        return await original(self, days, kind)

    monkeypatch.setattr(ActivityReader, "day_bitmaps", spied)
    seed({TODAY: {"late-1", "u3"}, TODAY - timedelta(days=3): {"late-2"}})
    sets[TODAY] |= {"late-1", "u3"}
    sets[TODAY - timedelta(days=3)] |= {"late-2"}
    again = (await api.get(path, admin)).json()
    assert {k: again[k] for k in ("distinctUsers", "days")} == summary_oracle(sets, TODAY - timedelta(days=34), TODAY)
    assert sorted(fetched) == [TODAY - timedelta(days=3), TODAY]  # the changed days' masks; the others cached
    # A new process, after another write today: every point but today's is in Redis; today's and the distinct
    # users come from unions in Redis, of its windows' past days kept there (made by this first new process) and
    # today's bitmaps; no bitmap is fetched.
    fetched.clear()
    seed({TODAY: {"late-3"}})
    sets[TODAY] |= {"late-3"}
    fresh = (await (await make_api()).get(path, admin)).json()
    assert {k: fresh[k] for k in ("distinctUsers", "days")} == summary_oracle(sets, TODAY - timedelta(days=34), TODAY)
    assert fetched == []
    # The next new process, after one more write today, finds the kept unions: none is made again (making one
    # SETs its label).
    seed({TODAY: {"late-4"}})
    sets[TODAY] |= {"late-4"}
    redis_client.config_resetstat()
    again = (await (await make_api()).get(path, admin)).json()
    assert {k: again[k] for k in ("distinctUsers", "days")} == summary_oracle(sets, TODAY - timedelta(days=34), TODAY)
    assert fetched == [] and "cmdstat_set" not in redis_client.info("commandstats")
    # A late event to a past day makes the kept unions that hold it again (its 21 points come from masks).
    seed({TODAY - timedelta(days=20): {"late-5"}})
    sets[TODAY - timedelta(days=20)] |= {"late-5"}
    late = (await (await make_api()).get(path, admin)).json()
    assert {k: late[k] for k in ("distinctUsers", "days")} == summary_oracle(sets, TODAY - timedelta(days=34), TODAY)
