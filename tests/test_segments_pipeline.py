"""Breakdowns and segments through the real pipeline (Kafka, consumer processes, Redis, an API process), on a
single Redis and on the real Redis Cluster, equal to the oracle of ``tests/support/segments.py`` computed from the
events sent with properties: a platform mix with users on two platforms in one day, events without properties,
invalid values (ignored and counted, the events still count) and non-object properties (dead-lettered with reason
``invalid_properties``). Then the cap: a second round brings more new values than the registry has places left,
read by two consumers (two groups on the same store) at once, racing for the last places; they agree, the values
refused count as ``(other)``, and the breakdown, segmented summary, stickiness and retention equal the oracle."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis

from activeusers.days import retained_days
from activeusers.keys import KeySchema
from tests.support import cohorts, segments
from tests.support.events import Sent, iso
from tests.support.network import answered, http_get
from tests.support.oracle import activity
from tests.support.processes import ConsumerProcess, cli_token, consumer_env, start_api
from tests.support.topics import produce, read_topic, wait_drained

RETENTION_DAYS = 400
MAX_VALUES = 7
PLATFORMS = ("web", "web", "web", "ios", "ios", "android", "desktop", "linux")  # 5 values, weighted
NEWCOMERS = ("x1", "x2", "x3", "x4", "x5")  # 2 places left for them
INVALID = (5, "", "x" * 65, None, ["ios"])
DAY_MS = 86_400_000


def _event(rng: random.Random, user: str, ts: int, platform: object) -> dict[str, Any]:
    event: dict[str, Any] = {"type": rng.choice(["login", "activity", "logout"]), "userId": user, "ts": iso(ts)}
    if platform is not None or rng.random() < 0.5:
        event["properties"] = {"platform": platform, "other": "ignored"}
    return event


def _first_round(rng: random.Random, now: int) -> tuple[list[Sent], int, int]:
    """The platform mix over 40 days, the invalid values sent and the non-object properties sent."""
    sent: list[Sent] = []
    ignored = dead = 0
    today = now - now % DAY_MS
    for back in range(40):
        for n in rng.sample(range(160), rng.randint(10, 45)):
            user, ts = f"s{n:03d}", max(0, min(now - 1, today - back * DAY_MS + rng.randrange(DAY_MS)))
            platforms = rng.sample(PLATFORMS, 2) if rng.random() < 0.15 else [rng.choice(PLATFORMS)]
            if rng.random() < 0.08:
                platforms = [None]  # no properties, or a null platform
            for platform in platforms:
                event = _event(rng, user, ts, platform)
                ignored += "properties" in event and platform is None
                sent.append(Sent(user.encode(), orjson.dumps(event), event))
            if rng.random() < 0.04:
                event = _event(rng, user, ts, rng.choice(INVALID))
                ignored += "properties" in event
                sent.append(Sent(user.encode(), orjson.dumps(event), event))
            if rng.random() < 0.02:
                bad = {"type": "login", "userId": user, "ts": iso(ts), "properties": rng.choice(["ios", [1], 3])}
                dead += 1
                sent.append(Sent(user.encode(), orjson.dumps(bad), None))
    return sent, ignored, dead


def _second_round(rng: random.Random, now: int) -> list[Sent]:
    sent = []
    for n in range(60):
        user, ts = f"s{n:03d}", now - rng.randrange(3 * DAY_MS)
        event = _event(rng, user, ts, rng.choice(NEWCOMERS))
        sent.append(Sent(user.encode(), orjson.dumps(event), event))
    return sent


def _metric(log_path: Any, name: str) -> float:
    url = next(
        line["url"]
        for line in map(orjson.loads, log_path.read_bytes().splitlines())
        if line.get("event") == "health endpoint listening"
    )
    status, body = http_get(url + "/metrics", {})
    assert status == 200
    return sum(float(line.split()[-1]) for line in body.decode().splitlines() if line.startswith(name + " "))


@pytest.fixture(scope="module")
def rounds() -> dict[str, Any]:
    now = int(time.time() * 1000)
    rng = random.Random(26)
    first, ignored, dead = _first_round(rng, now)
    return {"now": now, "first": first, "second": _second_round(rng, now), "ignored": ignored, "dead": dead}


@pytest.fixture(scope="module")
def served(stack, module_topic, module_redis_prefix, module_cluster_prefix, redis_cluster, rounds, tmp_path_factory):
    """Both stores: round one consumed by one consumer each; round two by it and a second group at once."""
    topic = module_topic(3)
    folder = tmp_path_factory.mktemp("segments")
    common = {"RETENTION_DAYS": str(RETENTION_DAYS), "SEGMENT_MAX_VALUES": str(MAX_VALUES)}
    stores = {
        "single": ({"REDIS_URL": stack.redis_url}, module_redis_prefix),
        "cluster": ({"REDIS_URL": redis_cluster, "REDIS_CLUSTER": "true"}, module_cluster_prefix),
    }
    envs = {
        name: [consumer_env(stack, topic, prefix, f"g-{uuid.uuid4().hex[:8]}", **common, **extra) for _ in range(2)]
        for name, (extra, prefix) in stores.items()
    }
    first = {name: ConsumerProcess(env[0], folder / f"consumer-{name}-a.log") for name, env in envs.items()}
    second: dict[str, ConsumerProcess] = {}
    try:
        produce(stack.kafka_bootstrap, topic, rounds["first"])
        for env in envs.values():
            wait_drained(env[0]["KAFKA_BOOTSTRAP_SERVERS"], env[0]["KAFKA_GROUP_ID"], topic)
        ignored = {name: _metric(first[name].log_path, "activeusers_property_values_ignored_total") for name in envs}
        # The second group catches up with round one first, so both read round two at once.
        second = {name: ConsumerProcess(env[1], folder / f"consumer-{name}-b.log") for name, env in envs.items()}
        for env in envs.values():
            wait_drained(env[1]["KAFKA_BOOTSTRAP_SERVERS"], env[1]["KAFKA_GROUP_ID"], topic)
        produce(stack.kafka_bootstrap, topic, rounds["second"])
        for env in envs.values():
            for member in env:
                wait_drained(member["KAFKA_BOOTSTRAP_SERVERS"], member["KAFKA_GROUP_ID"], topic)
    finally:
        assert all(consumer.stop() == 0 for consumer in [*first.values(), *second.values()])
    apis = {
        name: (cli_token(env[0], "segments-admin"), *start_api(env[0], folder / f"api-{name}.log"))
        for name, env in envs.items()
    }
    yield {
        "ignored": ignored,
        "topic": topic,
        "prefixes": {name: prefix for name, (_, prefix) in stores.items()},
        **{name: (base, headers) for name, (headers, _, base) in apis.items()},
    }
    for _, process, _ in apis.values():
        process.terminate()
        assert process.wait(timeout=15) == 0


def _registered(stack: Any, redis_cluster: str, store: str, prefix: str) -> dict[str, int]:
    keys = KeySchema(prefix, "UTC")
    if store == "single":
        client: Any = redis.Redis.from_url(stack.redis_url)
    else:
        client = redis.RedisCluster.from_url(redis_cluster)
    try:
        return {value.decode(): int(found) for value, found in client.hgetall(keys.values("platform")).items()}
    finally:
        client.close()


def _expected(rounds: dict[str, Any], registered: set[str]) -> tuple[Any, dict[tuple[date, str], set[str]]]:
    events = [s.event for s in rounds["first"] + rounds["second"] if s.event is not None]
    found = activity(events, ZoneInfo("UTC"), rounds["now"], RETENTION_DAYS)
    return found, segments.capped(segments.values_of(events, found.days, "UTC"), registered)


def _span(first: date, last: date) -> str:
    return f"start={first.isoformat()}T00:00:00.000Z&end={last.isoformat()}T23:59:59.999Z"


@pytest.mark.parametrize("store", ["single", "cluster"])
def test_everything_equals_the_oracle(served, rounds, stack, redis_cluster, store) -> None:
    registry = _registered(stack, redis_cluster, store, served["prefixes"][store])
    # The two consumers raced for the last places: exactly the cap, dense ids, two newcomers in.
    assert sorted(registry.values()) == list(range(1, MAX_VALUES + 1))
    assert set(PLATFORMS) <= set(registry) and len(set(NEWCOMERS) & set(registry)) == 2
    found, values = _expected(rounds, set(registry))
    today = datetime.fromtimestamp(rounds["now"] / 1000, tz=UTC).date()
    stored = retained_days(rounds["now"], UTC, RETENTION_DAYS)
    assert any(len(users) > 0 for (_, value), users in values.items() if value == "(other)")
    for first, last in ((today - timedelta(days=29), today), (today - timedelta(days=45), today - timedelta(days=20))):
        reported = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        answer = answered(served[store], f"/api/v1/active-users/breakdown?{_span(first, last)}&property=platform")
        assert answer == segments.breakdown(values, reported)
        for value in ("web", "ios", "(other)"):
            inside = segments.in_value(values, value)
            span = f"{_span(first, last)}&segment=platform:{value}"
            assert answered(served[store], f"/api/v1/active-users/summary?{span}") == segments.summary(inside, reported)
            sticky = answered(served[store], f"/api/v1/active-users/stickiness?{span}")
            assert sticky == cohorts.stickiness(inside, reported)
            for period, cohort in (("week", "first"), ("day", "active")):
                answer = answered(
                    served[store], f"/api/v1/active-users/retention?{span}&period={period}&cohort={cohort}"
                )
                held = (stored[0], stored[1])
                expected = cohorts.retention(
                    found.days, found.created, reported, held, today, period, cohort, segment=inside
                )
                assert answer == expected
    two = [
        u
        for (day, value), users in values.items()
        for u in users
        if value == "web" and u in values.get((day, "ios"), set())
    ]
    assert two  # users on two platforms in one day


def test_invalid_properties_are_dead_lettered_and_bad_values_counted(served, rounds, stack) -> None:
    # Four consumers (two groups on each store) read every record.
    letters = read_topic(stack.kafka_bootstrap, served["topic"] + ".dlq", expected=4 * rounds["dead"])
    reasons = [dict(letter.headers)["x-dlq-reason"] for letter in letters]
    assert reasons == [b"invalid_properties"] * (4 * rounds["dead"]) and rounds["dead"] > 0
    assert served["ignored"] == {"single": rounds["ignored"], "cluster": rounds["ignored"]}
