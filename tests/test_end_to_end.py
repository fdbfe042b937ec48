"""End to end with the real services: events produced to Kafka, stored by the real consumer process, queried
through the real API process; every answer equals an oracle computed from the events."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from streams import (
    ConsumerProcess,
    Sent,
    activity,
    cli_token,
    consumer_env,
    generate,
    http_get,
    iso,
    produce,
    start_api,
    wait_drained,
)

ZONE = "America/New_York"
RETENTION_DAYS = 30


def ingest(env: dict[str, str], records: list[Sent], tmp_path: Path, security: dict[str, Any] | None = None) -> None:
    """Produce the records to ``env``'s topic and run the real consumer process until its group has consumed
    them all. ``security``: the kafka-python security arguments of the test's own clients."""
    bootstrap, name = env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"]
    produce(bootstrap, name, records, security)
    consumer = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(bootstrap, env["KAFKA_GROUP_ID"], name, security=security)
    finally:
        assert consumer.stop() == 0


def test_events_to_answers(stack, topic, redis_prefix, tmp_path):
    name = topic(3)
    env = consumer_env(stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}")
    assert_pipeline_matches_oracle(env, tmp_path)


def assert_pipeline_matches_oracle(env: dict[str, str], tmp_path: Path, security: dict[str, Any] | None = None) -> None:
    """Produce a stream to ``env``'s topic, consume it with the real consumer, query the real API: every answer
    equals the oracle's. ``security``: the kafka-python security arguments of the test's own clients."""
    env = {**env, "ACTIVITY_TIMEZONE": ZONE, "RETENTION_DAYS": str(RETENTION_DAYS)}
    now = int(time.time() * 1000)
    sent = generate(101, 5000, now, users=400, days=40, malformed_share=0.02, avoid_days_ago=(29, 32))
    ingest(env, sent, tmp_path, security)
    headers = cli_token(env, "e2e-admin")
    api, base = start_api(env, tmp_path / "api.log")
    try:
        zone = ZoneInfo(ZONE)
        days = activity((s.event for s in sent), zone, now, RETENTION_DAYS).days
        today = datetime.fromtimestamp(now / 1000, tz=zone).date()

        # Rocket.Chat's dashboard request: 00:00:00.000 thirty days ago .. 23:59:59.999 today, in the zone.
        first, last = today - timedelta(days=30), today
        start = iso(int(datetime(first.year, first.month, first.day, tzinfo=zone).timestamp() * 1000))
        end_instant = datetime(last.year, last.month, last.day, 23, 59, 59, 999000, tzinfo=zone)
        end = iso(int(end_instant.timestamp() * 1000))
        url = f"{base}/api/v1/engagement-dashboard/users/active-users?start={start}&end={end}"
        status, body = http_get(url, headers)
        assert status == 200, body
        answer = orjson.loads(body)
        expected_days = sorted((d for d in days if first <= d <= last and days[d]), reverse=True)
        assert [(e["year"], e["month"], e["day"]) for e in answer["month"]] == [
            (d.year, d.month, d.day) for d in expected_days
        ]
        for entry, day in zip(answer["month"], expected_days, strict=True):
            assert set(entry["usersList"]) == days[day]
            assert entry["users"] == len(days[day])
        assert list(answer) == ["month", "success"] and answer["success"] is True

        first = today - timedelta(days=20)
        start = iso(int(datetime(first.year, first.month, first.day, 12, tzinfo=zone).timestamp() * 1000))
        status, body = http_get(f"{base}/api/v1/active-users/summary?start={start}&end={end}", headers)
        assert status == 200, body
        summary = orjson.loads(body)
        span = [first + timedelta(days=i) for i in range((last - first).days + 1)]

        def union(window_end: date, width: int) -> set[str]:
            found: set[str] = set()
            for i in range(width):
                found |= days.get(window_end - timedelta(days=i), set())
            return found

        assert summary["distinctUsers"] == len(set().union(*(days.get(d, set()) for d in span)))
        rows = {row["date"]: row for row in summary["days"]}
        for d in span:
            row = rows[d.isoformat()]
            expected = (len(days.get(d, set())), len(union(d, 7)), len(union(d, 30)))
            assert (row["dau"], row["wau"], row["mau"]) == expected
        assert summary["timezone"] == ZONE

        status, csv = http_get(f"{base}/api/v1/active-users/summary?start={start}&end={end}&format=csv", headers)
        assert status == 200
        lines = csv.decode().strip().splitlines()
        assert lines[0] == "date,dau,wau,mau"
        assert len(lines) - 1 == len(summary["days"])
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0


def test_by_day_counts_are_not_inflated_by_duplicates_and_restarts(stack, topic, redis_prefix, tmp_path):
    """The same stream produced twice (an at-least-once producer retrying everything) changes no answer."""
    name = topic(2)
    now = int(time.time() * 1000)
    sent = generate(202, 1500, now, users=100, days=5)
    env = consumer_env(stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}", ACTIVITY_TIMEZONE="UTC")
    ingest(env, sent + sent, tmp_path)
    per_day: dict[date, set[str]] = defaultdict(set)
    for s in sent:
        if s.event and s.event["type"] in {"login", "activity", "logout"} and s.event.get("roles") != ["anonymous"]:
            ts = s.event["ts"]
            ms = ts if isinstance(ts, int) else int(datetime.fromisoformat(ts).timestamp() * 1000)
            per_day[datetime.fromtimestamp(ms / 1000, tz=UTC).date()].add(s.event["userId"])
    headers = cli_token(env, "u")
    api, base = start_api(env, tmp_path / "api.log")
    try:
        first = min(per_day)
        start = iso(int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() * 1000))
        status, body = http_get(
            f"{base}/api/v1/engagement-dashboard/users/active-users?start={start}&end={iso(now)}",
            headers,
        )
        assert status == 200
        got = {date(e["year"], e["month"], e["day"]): e["users"] for e in orjson.loads(body)["month"]}
        assert got == {d: len(users) for d, users in per_day.items()}
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0


# --- the Users tab's other four endpoints -------------------------------------------------------------------------
# The oracles below work on the events' buckets with plain datetime arithmetic on a 15-minute grid (every offset
# in use is a multiple of 15 minutes), not with the service's window functions.

SLOT_MS = 900_000
HOUR_RETENTION_DAYS = 10


def _bucket(ms: int, zone: ZoneInfo) -> tuple[date, int]:
    local = datetime.fromtimestamp(ms / 1000, tz=zone)
    return local.date(), local.hour


def _local_ms(day: date, zone: ZoneInfo, *clock: int) -> int:
    return int(datetime(day.year, day.month, day.day, *clock, tzinfo=zone).timestamp() * 1000)


def _grid(first_ms: int, last_ms: int) -> range:
    """The 15-minute grid instants of [first_ms, last_ms]."""
    return range(-(-first_ms // SLOT_MS) * SLOT_MS, last_ms + 1, SLOT_MS)


def expected_new_users(created: dict[date, set[str]], start: int, end: int, zone: ZoneInfo) -> dict[str, object]:
    # moment's diff in days is the difference of the two local wall-clock times.
    wall = datetime.fromtimestamp(end / 1000, tz=zone).replace(tzinfo=None) - datetime.fromtimestamp(
        start / 1000, tz=zone
    ).replace(tzinfo=None)
    elapsed_ms = wall // timedelta(milliseconds=1)
    limit = int(elapsed_ms / 86_400_000) + 1
    first, last = _bucket(start, zone)[0], _bucket(end, zone)[0]

    def newest(low: date, high: date) -> list[tuple[date, int]]:
        return sorted(((d, len(u)) for d, u in created.items() if low <= d <= high and u), reverse=True)[
            : max(limit, 0)
        ]

    days = newest(first, last)
    previous = newest(first - timedelta(days=1 + limit), first - timedelta(days=1)) if limit > 0 else []
    listed = dict(days)
    yesterday = listed.get(last - timedelta(days=1), 0)
    return {
        "days": [{"day": iso(_local_ms(d, zone)), "users": n} for d, n in days],
        "period": {"count": sum(listed.values()), "variation": sum(listed.values()) - sum(n for _, n in previous)},
        "yesterday": {"count": yesterday, "variation": listed.get(last, 0) - yesterday},
        "success": True,
    }


def expected_by_time_of_day(
    hours: dict[tuple[date, int], set[str]], start: int, end: int, zone: ZoneInfo
) -> dict[str, object]:
    overlapping = {_bucket(t, zone) for t in (start, end, *_grid(start, end))} if start <= end else set()
    week = [
        {"users": len(hours[b]), "hour": b[1], "day": b[0].day, "month": b[0].month, "year": b[0].year}
        for b in sorted(overlapping, reverse=True)
        if hours.get(b)
    ]
    return {"week": week, "success": True}


def expected_hourly(hours: dict[tuple[date, int], set[str]], start: int, zone: ZoneInfo) -> dict[str, object]:
    # A bucket starts at the first grid instant carrying its label; the window is (start - 24 h, start].
    starting = {
        _bucket(t, zone) for t in _grid(start - 86_400_000 + 1, start) if _bucket(t - SLOT_MS, zone) != _bucket(t, zone)
    }
    slots = []
    for hour in range(22, -1, -2):
        users: set[str] = set()
        for b in starting:
            if b[1] in (hour, hour + 1):
                users |= hours.get(b, set())
        slots.append({"users": len(users), "hour": hour})
    return {"hours": slots if any(s["users"] for s in slots) else [], "success": True}


def expected_weekly(days: dict[date, set[str]], start: int, zone: ZoneInfo) -> dict[str, object]:
    last = _bucket(start, zone)[0]
    week = [last - timedelta(days=n) for n in range(8)]
    month = [{"users": len(days[d]), "day": d.day, "month": d.month, "year": d.year} for d in week if days.get(d)]
    return {"month": month, "success": True}


def test_users_tab_answers_equal_the_oracle(stack, topic, redis_prefix, tmp_path):
    """new-users, users-by-time-of-the-day-in-a-week, hourly-data and weekly-data through Kafka, the consumer,
    Redis and the API process, in New York (whose fall-back day lies in the stream), against the oracle."""
    name = topic(3)
    now = int(time.time() * 1000)
    sent = generate(
        404, 6000, now, users=300, days=40, avoid_days_ago=(29, 32), also_avoid=((HOUR_RETENTION_DAYS - 1, 12),)
    )
    # Every creation sent twice (a producer's retry): still one new user.
    replayed = [s for s in sent if s.event and s.event["type"] == "user.created"]
    assert len(replayed) > 100
    env = consumer_env(
        stack,
        name,
        redis_prefix,
        f"g-{uuid.uuid4().hex[:8]}",
        ACTIVITY_TIMEZONE=ZONE,
        RETENTION_DAYS=str(RETENTION_DAYS),
        HOUR_RETENTION_DAYS=str(HOUR_RETENTION_DAYS),
    )
    ingest(env, sent + replayed, tmp_path)
    headers = cli_token(env, "e2e-admin")
    api, base = start_api(env, tmp_path / "api.log")
    zone = ZoneInfo(ZONE)
    found = activity((s.event for s in sent), zone, now, RETENTION_DAYS, HOUR_RETENTION_DAYS)
    today = _bucket(now, zone)[0]
    users = f"{base}/api/v1/engagement-dashboard/users/"

    def get(path: str, **params: int) -> object:
        query = "&".join(f"{k}={iso(v)}" for k, v in params.items())
        status, body = http_get(f"{users}{path}?{query}", headers)
        assert status == 200, body
        return orjson.loads(body)

    try:
        whole_days = [
            (_local_ms(today - timedelta(days=n), zone), _local_ms(today, zone, 23, 59, 59, 999)) for n in (6, 29, 40)
        ]
        mid_day = (now - 3 * 86_400_000 - 7_777_777, now - 1_234_567)
        reversed_range = (now, now - 2 * 86_400_000)
        checked = 0
        for start, end in [*whole_days, mid_day, reversed_range, (0, now + 86_400_000)]:
            assert get("new-users", start=start, end=end) == expected_new_users(found.created, start, end, zone)
            by_time = get("users-by-time-of-the-day-in-a-week", start=start, end=end)
            assert by_time == expected_by_time_of_day(found.hours, start, end, zone)
            checked += len(by_time["week"])  # type: ignore[index]
        assert checked > 200
        fall_back = datetime(2026, 11, 1, 23, 59, 59, 999000, tzinfo=zone)  # the 25-hour day
        hourly_starts = [now, _local_ms(today, zone, 23, 59, 59, 999), now - 3 * 86_400_000]
        if now - fall_back.timestamp() * 1000 < (HOUR_RETENTION_DAYS - 1) * 86_400_000:
            hourly_starts.append(int(fall_back.timestamp() * 1000))
        for start in hourly_starts:
            assert get("chat-busier/hourly-data", start=start) == expected_hourly(found.hours, start, zone)
        # Beyond the hour retention: hour sets are gone, so there is nothing to report.
        old = now - 20 * 86_400_000
        assert get("chat-busier/hourly-data", start=old) == {"hours": [], "success": True}
        for start in (now, now - 5 * 86_400_000, now - 35 * 86_400_000):
            assert get("chat-busier/weekly-data", start=start) == expected_weekly(found.days, start, zone)
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0
