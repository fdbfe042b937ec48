"""End to end with the real services: events produced to Kafka, stored by the real consumer process, queried
through the real API process; every answer equals an oracle computed from the events."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from tests.support.answers import (
    expected_by_time_of_day,
    expected_hourly,
    expected_new_users,
    expected_weekly,
    local_hour,
    local_ms,
)
from tests.support.events import generate, iso
from tests.support.network import http_get
from tests.support.oracle import activity
from tests.support.pipeline import RETENTION_DAYS, ZONE, assert_pipeline_matches_oracle, ingest
from tests.support.processes import cli_token, consumer_env, start_api


def test_events_to_answers(stack, topic, redis_prefix, tmp_path):
    name = topic(3)
    env = consumer_env(stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}")
    assert_pipeline_matches_oracle(env, tmp_path)


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
HOUR_RETENTION_DAYS = 10


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
    today = local_hour(now, zone)[0]
    users = f"{base}/api/v1/engagement-dashboard/users/"

    def get(path: str, **params: int) -> object:
        query = "&".join(f"{k}={iso(v)}" for k, v in params.items())
        status, body = http_get(f"{users}{path}?{query}", headers)
        assert status == 200, body
        return orjson.loads(body)

    try:
        whole_days = [
            (local_ms(today - timedelta(days=n), zone), local_ms(today, zone, 23, 59, 59, 999)) for n in (6, 29, 40)
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
        hourly_starts = [now, local_ms(today, zone, 23, 59, 59, 999), now - 3 * 86_400_000]
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
