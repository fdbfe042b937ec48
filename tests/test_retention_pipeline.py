"""Retention and stickiness through the real pipeline (Kafka, a consumer process, Redis, an API process), on a
single Redis and on the real Redis Cluster, equal to the oracle of ``tests/cohorts.py`` computed from the events
sent: every cohort and period over a week spanning a year boundary, a DST change inside a week (Europe/Berlin,
2026-10-25) and month boundaries. The events come in two rounds, each consumed before the next: the later days
first, then the earlier days of the same users with a replay of the first round, so users' first days move earlier
after their later days are stored, and replayed events change nothing."""

from __future__ import annotations

import random
import time
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from activeusers.days import retained_days
from tests.support import cohorts
from tests.support.events import Sent, iso
from tests.support.network import answered
from tests.support.oracle import activity
from tests.support.processes import ConsumerProcess, cli_token, consumer_env, start_api
from tests.support.topics import produce, wait_drained

ZONE = ZoneInfo("Europe/Berlin")
RETENTION_DAYS = 400
YEAR_END = (date(2025, 12, 15), date(2026, 1, 20))
DST_AUTUMN = (date(2026, 10, 10), date(2026, 11, 12))


def _local_ms(day: date, *clock: int) -> int:
    return int(datetime(day.year, day.month, day.day, *clock, tzinfo=ZONE).timestamp() * 1000)


def _events(rng: random.Random, first: date, last: date, now_ms: int, pool: range) -> list[Sent]:
    sent: list[Sent] = []
    day = first
    while day <= last:
        for user in rng.sample(pool, rng.randint(5, 30)):
            ts = _local_ms(day) + rng.randrange(86_400_000 - 3_600_000)  # a DST day is 23 or 25 hours
            kind = rng.choice(["login", "activity", "logout", "activity", "user.created"])
            if ts < now_ms:
                event = {"type": kind, "userId": f"u{user:03d}", "ts": iso(ts)}
                sent.append(Sent(f"u{user:03d}".encode(), orjson.dumps(event), event))
        day += timedelta(days=1)
    return sent


@pytest.fixture(scope="module")
def rounds() -> tuple[int, list[Sent], list[Sent]]:
    now = int(time.time() * 1000)
    today = datetime.fromtimestamp(now / 1000, tz=ZONE).date()
    rng = random.Random(24)
    old, new = range(120), range(60, 200)  # users of the year's end, and of the autumn: some of them new
    late = _events(rng, today - timedelta(days=20), today, now, new)
    late += _events(rng, DST_AUTUMN[0] + timedelta(days=22), DST_AUTUMN[1], now, new)
    late += _events(rng, YEAR_END[0] + timedelta(days=20), YEAR_END[1], now, old)
    early = _events(rng, YEAR_END[0], YEAR_END[0] + timedelta(days=19), now, old)
    early += _events(rng, DST_AUTUMN[0], DST_AUTUMN[0] + timedelta(days=21), now, new)
    early += rng.sample(late, len(late) // 3)  # replayed
    return now, late, early


@pytest.fixture(scope="module")
def served(stack, module_topic, module_redis_prefix, module_cluster_prefix, redis_cluster, rounds, tmp_path_factory):
    """Both stores consumed round by round by their own consumer process, then served by an API process each."""
    _, late, early = rounds
    topic = module_topic(3)
    folder = tmp_path_factory.mktemp("retention")
    common = {"ACTIVITY_TIMEZONE": ZONE.key, "RETENTION_DAYS": str(RETENTION_DAYS)}
    stores = {
        "single": consumer_env(stack, topic, module_redis_prefix, f"g-{uuid.uuid4().hex[:8]}", **common),
        "cluster": consumer_env(
            stack, topic, module_cluster_prefix, f"g-{uuid.uuid4().hex[:8]}",
            REDIS_URL=redis_cluster, REDIS_CLUSTER="true", **common,
        ),
    }  # fmt: skip
    consumers = [ConsumerProcess(env, folder / f"consumer-{name}.log") for name, env in stores.items()]
    try:
        for sent in (late, early):
            produce(stack.kafka_bootstrap, topic, sent)
            for env in stores.values():
                wait_drained(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_GROUP_ID"], topic)
    finally:
        assert all(consumer.stop() == 0 for consumer in consumers)
    apis = {
        name: (cli_token(env, "retention-admin"), *start_api(env, folder / f"api-{name}.log"))
        for name, env in stores.items()
    }
    yield {name: (base, headers) for name, (headers, _, base) in apis.items()}
    for _, process, _ in apis.values():
        process.terminate()
        assert process.wait(timeout=15) == 0


def _oracle_input(rounds: tuple[int, list[Sent], list[Sent]]) -> tuple[object, date, tuple[date, date]]:
    now, late, early = rounds
    found = activity((s.event for s in late + early), ZONE, now, RETENTION_DAYS)
    today = datetime.fromtimestamp(now / 1000, tz=ZONE).date()
    return found, today, retained_days(now, ZONE, RETENTION_DAYS)


def _reported(first: date, last: date, stored: tuple[date, date]) -> list[date]:
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [day for day in days if stored[0] <= day <= stored[1]]


@pytest.mark.parametrize("store", ["single", "cluster"])
@pytest.mark.parametrize("period", ["day", "week", "month"])
@pytest.mark.parametrize("cohort", ["first", "new", "active"])
def test_retention_equals_the_oracle(served, rounds, store, period, cohort) -> None:
    found, today, stored = _oracle_input(rounds)
    members = 0
    for first, last in ((date(2025, 12, 22), date(2026, 1, 12)), (DST_AUTUMN[0], today)):
        periods = 400 if period == "day" else 12
        span = f"start={iso(_local_ms(first))}&end={iso(_local_ms(last, 23, 59, 59, 999))}"
        answer = answered(
            served[store], f"/api/v1/active-users/retention?{span}&period={period}&cohort={cohort}&periods={periods}"
        )
        expected = cohorts.retention(
            found.days, found.created, _reported(first, last, stored), stored, today, period, cohort, periods, ZONE.key
        )
        assert answer == expected
        members += sum(row["size"] for row in expected["cohorts"])
    assert members > 50


@pytest.mark.parametrize("store", ["single", "cluster"])
def test_stickiness_equals_the_oracle(served, rounds, store) -> None:
    found, today, stored = _oracle_input(rounds)
    for first, last in ((date(2026, 10, 19), date(2026, 11, 8)), (today - timedelta(days=29), today)):
        span = f"start={iso(_local_ms(first))}&end={iso(_local_ms(last, 23, 59, 59, 999))}"
        answer = answered(served[store], f"/api/v1/active-users/stickiness?{span}")
        assert answer == cohorts.stickiness(found.days, _reported(first, last, stored), ZONE.key)
        assert answer["distinctUsers"] > 10
