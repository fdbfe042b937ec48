"""End to end with the real services: events produced to Kafka, stored by the real consumer process, queried
through the real API process; every answer equals an oracle computed from the events."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from streams import (
    REPO_ROOT,
    ConsumerProcess,
    consumer_env,
    generate,
    http_get,
    iso,
    oracle,
    produce,
    start_api,
    wait_drained,
)

from activeusers.keys import KeySchema

ZONE = "America/New_York"
RETENTION_DAYS = 30


def _day_sets(expected: dict[str, set[str]], keys: KeySchema) -> dict[date, set[str]]:
    marker = keys.day(date(2000, 1, 1)).rsplit(":", 1)[0] + ":"
    return {date.fromisoformat(k[len(marker) :]): v for k, v in expected.items() if k.startswith(marker)}


def test_events_to_answers(stack, topic, redis_prefix, tmp_path):
    name = topic(3)
    env = consumer_env(stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}")
    assert_pipeline_matches_oracle(env, tmp_path)


def assert_pipeline_matches_oracle(env: dict[str, str], tmp_path: Path, security: dict[str, Any] | None = None) -> None:
    """Produce a stream to ``env``'s topic, consume it with the real consumer, query the real API: every answer
    equals the oracle's. ``security``: the kafka-python security arguments of the test's own clients."""
    env = {**env, "ACTIVITY_TIMEZONE": ZONE, "RETENTION_DAYS": str(RETENTION_DAYS)}
    name, bootstrap, redis_prefix = env["KAFKA_TOPIC"], env["KAFKA_BOOTSTRAP_SERVERS"], env["REDIS_KEY_PREFIX"]
    now = int(time.time() * 1000)
    sent = generate(101, 5000, now, users=400, days=40, malformed_share=0.02, avoid_days_ago=(29, 32))
    produce(bootstrap, name, sent, security)
    consumer = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(bootstrap, env["KAFKA_GROUP_ID"], name, security=security)
    finally:
        assert consumer.stop() == 0
    token = subprocess.run(
        [
            sys.executable,
            "-m",
            "activeusers.cli",
            "token",
            "create",
            "--user-id",
            "e2e-admin",
            "--permission",
            "view-engagement-dashboard",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    headers = {"X-User-Id": "e2e-admin", "X-Auth-Token": token}
    api, base = start_api(env, tmp_path / "api.log")
    try:
        keys = KeySchema(redis_prefix, ZONE)
        zone = ZoneInfo(ZONE)
        days = _day_sets(oracle((s.event for s in sent), keys, zone, now, RETENTION_DAYS), keys)
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
    produce(stack.kafka_bootstrap, name, sent + sent)
    consumer = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        assert consumer.stop() == 0
    per_day: dict[date, set[str]] = defaultdict(set)
    for s in sent:
        if s.event and s.event["type"] in {"login", "activity", "logout"} and s.event.get("roles") != ["anonymous"]:
            ts = s.event["ts"]
            ms = ts if isinstance(ts, int) else int(datetime.fromisoformat(ts).timestamp() * 1000)
            per_day[datetime.fromtimestamp(ms / 1000, tz=UTC).date()].add(s.event["userId"])
    token = subprocess.run(
        [
            sys.executable,
            "-m",
            "activeusers.cli",
            "token",
            "create",
            "--user-id",
            "u",
            "--permission",
            "view-engagement-dashboard",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    api, base = start_api(env, tmp_path / "api.log")
    try:
        first = min(per_day)
        start = iso(int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() * 1000))
        status, body = http_get(
            f"{base}/api/v1/engagement-dashboard/users/active-users?start={start}&end={iso(now)}",
            {"X-User-Id": "u", "X-Auth-Token": token},
        )
        assert status == 200
        got = {date(e["year"], e["month"], e["day"]): e["users"] for e in orjson.loads(body)["month"]}
        assert got == {d: len(users) for d, users in per_day.items()}
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0
