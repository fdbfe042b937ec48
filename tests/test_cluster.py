"""The same pipeline against a single Redis and against the real Redis Cluster (``dev/stack up --cluster``): one
stream in Kafka, consumed by two real consumer processes (one group each) into either store, queried through two
real API processes; every endpoint answers byte for byte the same."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from streams import ConsumerProcess, cli_token, consumer_env, generate, http_get, iso, produce, start_api, wait_drained

ZONE = "America/New_York"
RETENTION_DAYS = 30
HOUR_RETENTION_DAYS = 10


@dataclass(frozen=True)
class Served:
    """One API process over one store."""

    base: str
    headers: dict[str, str]

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(f"{self.base}{path}", self.headers)


@dataclass(frozen=True)
class Pair:
    """The API over the single Redis and the API over the cluster, fed by the same stream at ``now``."""

    single: Served
    cluster: Served
    now: int


@pytest.fixture(scope="module")
def pair(
    stack, redis_cluster, module_topic, module_redis_prefix, module_cluster_prefix, tmp_path_factory
) -> Iterator[Pair]:
    name = module_topic(3)
    now = int(time.time() * 1000)
    sent = generate(
        505, 5000, now, users=300, days=40, malformed_share=0.02, avoid_days_ago=(29, 32),
        also_avoid=((HOUR_RETENTION_DAYS - 1, 12),),
    )  # fmt: skip
    common = {
        "ACTIVITY_TIMEZONE": ZONE,
        "RETENTION_DAYS": str(RETENTION_DAYS),
        "HOUR_RETENTION_DAYS": str(HOUR_RETENTION_DAYS),
        "API_RATE_LIMIT": "100000",  # the rate limiter's keys go through each store too
    }
    single_env = consumer_env(stack, name, module_redis_prefix, f"g-{uuid.uuid4().hex[:8]}", **common)
    cluster_env = consumer_env(
        stack, name, module_cluster_prefix, f"g-{uuid.uuid4().hex[:8]}", REDIS_URL=redis_cluster, REDIS_CLUSTER="true",
        **common,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("cluster")
    produce(stack.kafka_bootstrap, name, sent)
    for env, label in ((single_env, "single"), (cluster_env, "cluster")):
        consume_all(env, folder / f"consumer-{label}.log")
    apis = []
    try:
        served = []
        for env, label in ((single_env, "single"), (cluster_env, "cluster")):
            headers = cli_token(env, "e2e-admin")
            api, base = start_api(env, folder / f"api-{label}.log")
            apis.append(api)
            served.append(Served(base, headers))
        yield Pair(served[0], served[1], now)
    finally:
        for api in apis:
            api.terminate()
            assert api.wait(timeout=15) == 0


def consume_all(env: dict[str, str], log: Path) -> None:
    """Run the real consumer process until its group has consumed the whole topic."""
    consumer = ConsumerProcess(env, log)
    try:
        wait_drained(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_GROUP_ID"], env["KAFKA_TOPIC"])
    finally:
        assert consumer.stop() == 0


def _local_ms(day: date, *clock: int) -> int:
    return int(datetime(day.year, day.month, day.day, *clock, tzinfo=ZoneInfo(ZONE)).timestamp() * 1000)


def _requests(now: int) -> dict[str, list[str]]:
    """Per endpoint, the requests whose answers are compared: whole days, mid-day, reversed and huge ranges."""
    today = datetime.fromtimestamp(now / 1000, tz=ZoneInfo(ZONE)).date()
    end_of_today = _local_ms(today, 23, 59, 59, 999)
    ranges = [(_local_ms(today - timedelta(days=n)), end_of_today) for n in (0, 6, 29, 40)]
    ranges += [(now - 3 * 86_400_000 - 7_777_777, now - 1_234_567), (now, now - 2 * 86_400_000), (0, now + 86_400_000)]
    starts = [now, end_of_today, now - 3 * 86_400_000, now - 20 * 86_400_000, now - 35 * 86_400_000]
    dashboard = "/api/v1/engagement-dashboard/users/"
    spans = [f"start={iso(start)}&end={iso(end)}" for start, end in ranges]
    return {
        "active-users": [f"{dashboard}active-users?{span}" for span in spans],
        "summary": [f"/api/v1/active-users/summary?{span}" for span in spans],
        "summary-csv": [f"/api/v1/active-users/summary?{span}&format=csv" for span in spans],
        "new-users": [f"{dashboard}new-users?{span}" for span in spans],
        "users-by-time-of-the-day-in-a-week": [f"{dashboard}users-by-time-of-the-day-in-a-week?{s}" for s in spans],
        "hourly-data": [f"{dashboard}chat-busier/hourly-data?start={iso(start)}" for start in starts],
        "weekly-data": [f"{dashboard}chat-busier/weekly-data?start={iso(start)}" for start in starts],
    }


ENDPOINTS = list(_requests(0))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_cluster_answers_byte_for_byte_like_the_single_redis(pair: Pair, endpoint: str) -> None:
    answered = 0
    for path in _requests(pair.now)[endpoint]:
        single, cluster = pair.single.get(path), pair.cluster.get(path)
        assert cluster == single, path
        answered += single[0] == 200 and len(single[1]) > 0
    assert answered >= 4  # mostly real answers (a reversed range may be refused alike)


def test_the_answers_are_not_empty(pair: Pair) -> None:
    status, body = pair.cluster.get(_requests(pair.now)["active-users"][2])
    assert status == 200 and sum(day["users"] for day in orjson.loads(body)["month"]) > 100


def test_the_cluster_api_is_ready_with_its_consumer_heartbeats(pair: Pair) -> None:
    status, body = pair.cluster.get("/readyz")
    # The consumer has stopped: its heartbeat is withdrawn, so the consumer check says so; Redis is fine.
    assert orjson.loads(body)["checks"]["redis"] == {"ok": True, "error": None}
    assert status in (200, 503)
