"""The whole pipeline as an operator runs it: events produced to Kafka, stored by the real consumer process,
queried through the real API process, every answer compared with the oracle's."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from tests.support.events import Sent, generate, iso
from tests.support.network import http_get
from tests.support.oracle import activity
from tests.support.processes import ConsumerProcess, cli_token, start_api
from tests.support.topics import produce, wait_drained

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
