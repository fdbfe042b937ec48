"""The same pipeline against a single Redis and against each real Redis Cluster of ``dev/stack up --cluster``
(plaintext) and ``--cluster --secure`` (TLS only, client certificates, the least-privileged ACL user): one stream in
Kafka, consumed by a real consumer process per store (one group each), queried through a real API process per
store; every endpoint answers byte for byte the same, and active-users lists every id of every day of a stream
longer than the 45 days earlier versions listed, equal to the oracle. Both services export the cluster client's
metrics."""

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

from tests.support.events import Sent, generate, iso
from tests.support.network import free_port, http_get
from tests.support.oracle import activity
from tests.support.processes import ConsumerProcess, cli_token, consumer_env, start_api
from tests.support.topics import produce, wait_drained

ZONE = "America/New_York"
RETENTION_DAYS = 400
HOUR_RETENTION_DAYS = 10
STREAM_DAYS = 75


@dataclass(frozen=True)
class Served:
    """One API process over one store, and what that store's consumer served on ``/metrics`` before it stopped."""

    base: str
    headers: dict[str, str]
    consumer_metrics: str

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(f"{self.base}{path}", self.headers)


@dataclass(frozen=True)
class Stream:
    """The topic every store's consumer reads, the settings they share, and when it was produced."""

    topic: str
    now: int
    common: dict[str, str]
    folder: Path
    sent: list[Sent]


@pytest.fixture(scope="module")
def stream(stack, module_topic, tmp_path_factory) -> Stream:
    name = module_topic(3)
    now = int(time.time() * 1000)
    sent = generate(
        505, 6000, now, users=300, days=STREAM_DAYS, malformed_share=0.02,
        avoid_days_ago=(HOUR_RETENTION_DAYS - 1, 12),
    )  # fmt: skip
    produce(stack.kafka_bootstrap, name, sent)
    common = {
        "ACTIVITY_TIMEZONE": ZONE,
        "RETENTION_DAYS": str(RETENTION_DAYS),
        "HOUR_RETENTION_DAYS": str(HOUR_RETENTION_DAYS),
        "API_RATE_LIMIT": "100000",  # the rate limiter's keys go through each store too
    }
    return Stream(name, now, common, tmp_path_factory.mktemp("cluster"), sent)


def serve(stack, stream: Stream, prefix: str, label: str, **redis: str) -> Iterator[Served]:
    """Consume the whole stream into one store with a real consumer, then serve it with a real API process."""
    env = consumer_env(stack, stream.topic, prefix, f"g-{uuid.uuid4().hex[:8]}", **redis, **stream.common)
    metrics = consume_all(env, stream.folder / f"consumer-{label}.log")
    headers = cli_token(env, "e2e-admin")
    api, base = start_api(env, stream.folder / f"api-{label}.log")
    try:
        yield Served(base, headers, metrics)
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0


@pytest.fixture(scope="module")
def single(stack, stream, module_redis_prefix) -> Iterator[Served]:
    yield from serve(stack, stream, module_redis_prefix, "single")


@pytest.fixture(scope="module", params=["plaintext", "tls-acl"])
def cluster(request, stack, stream) -> Iterator[Served]:
    """The same stream in a real Redis Cluster: the plaintext one, or the TLS-only one with the ACL user."""
    if request.param == "plaintext":
        redis = {"REDIS_URL": request.getfixturevalue("redis_cluster"), "REDIS_CLUSTER": "true"}
        prefix = request.getfixturevalue("module_cluster_prefix")
    else:
        secure = request.getfixturevalue("secure_cluster_env")
        redis = {name: value for name, value in secure.items() if name.startswith("REDIS_")}
        prefix = request.getfixturevalue("module_secure_cluster_prefix")
    yield from serve(stack, stream, prefix, f"cluster-{request.param}", **redis)


def consume_all(env: dict[str, str], log: Path) -> str:
    """Run the real consumer process until its group has consumed the whole topic; its last ``/metrics``."""
    port = free_port()
    consumer = ConsumerProcess({**env, "CONSUMER_METRICS_PORT": str(port)}, log)
    try:
        wait_drained(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_GROUP_ID"], env["KAFKA_TOPIC"])
        status, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
    finally:
        assert consumer.stop() == 0
    return metrics.decode()


def _local_ms(day: date, *clock: int) -> int:
    return int(datetime(day.year, day.month, day.day, *clock, tzinfo=ZoneInfo(ZONE)).timestamp() * 1000)


def _requests(now: int) -> dict[str, list[str]]:
    """Per endpoint, the requests whose answers are compared: whole days, mid-day, reversed and huge ranges."""
    today = datetime.fromtimestamp(now / 1000, tz=ZoneInfo(ZONE)).date()
    end_of_today = _local_ms(today, 23, 59, 59, 999)
    ranges = [(_local_ms(today - timedelta(days=n)), end_of_today) for n in (0, 6, 29, 40, STREAM_DAYS)]
    ranges += [(now - 3 * 86_400_000 - 7_777_777, now - 1_234_567), (now, now - 2 * 86_400_000), (0, now + 86_400_000)]
    starts = [now, end_of_today, now - 3 * 86_400_000, now - 20 * 86_400_000, now - 35 * 86_400_000]
    dashboard = "/api/v1/engagement-dashboard/users/"
    spans = [f"start={iso(start)}&end={iso(end)}" for start, end in ranges]
    return {
        "active-users": [f"{dashboard}active-users?{span}" for span in spans],
        "summary": [f"/api/v1/active-users/summary?{span}" for span in spans],
        "summary-csv": [f"/api/v1/active-users/summary?{span}&format=csv" for span in spans],
        "retention": [
            f"/api/v1/active-users/retention?{span}&period={p}" for span in spans for p in ("day", "week", "month")
        ],
        "retention-new-csv": [f"/api/v1/active-users/retention?{span}&cohort=new&format=csv" for span in spans],
        "stickiness": [f"/api/v1/active-users/stickiness?{span}" for span in spans],
        "new-users": [f"{dashboard}new-users?{span}" for span in spans],
        "users-by-time-of-the-day-in-a-week": [f"{dashboard}users-by-time-of-the-day-in-a-week?{s}" for s in spans],
        "hourly-data": [f"{dashboard}chat-busier/hourly-data?start={iso(start)}" for start in starts],
        "weekly-data": [f"{dashboard}chat-busier/weekly-data?start={iso(start)}" for start in starts],
    }


ENDPOINTS = list(_requests(0))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_cluster_answers_byte_for_byte_like_the_single_redis(
    single: Served, cluster: Served, stream: Stream, endpoint: str
) -> None:
    answered = 0
    for path in _requests(stream.now)[endpoint]:
        alone, clustered = single.get(path), cluster.get(path)
        assert clustered == alone, path
        answered += alone[0] == 200 and len(alone[1]) > 0
    assert answered >= 4  # mostly real answers (a reversed range may be refused alike)


def test_active_users_lists_every_id_of_every_day_equal_to_the_oracle(
    single: Served, cluster: Served, stream: Stream
) -> None:
    zone = ZoneInfo(ZONE)
    days = activity((s.event for s in stream.sent), zone, stream.now, RETENTION_DAYS).days
    today = datetime.fromtimestamp(stream.now / 1000, tz=zone).date()
    first = today - timedelta(days=STREAM_DAYS)
    span = f"start={iso(_local_ms(first))}&end={iso(_local_ms(today, 23, 59, 59, 999))}"
    path = f"/api/v1/engagement-dashboard/users/active-users?{span}"
    expected = [
        {"usersList": sorted(days[day]), "users": len(days[day]), "day": day.day, "month": day.month, "year": day.year}
        for day in sorted(days, reverse=True)
        if days[day]
    ]
    assert (today - min(days)).days > 45  # past what the day sets of earlier versions listed
    for served in (single, cluster):
        status, body = served.get(path)
        assert status == 200, body
        assert body == orjson.dumps({"month": expected, "success": True})


def test_the_answers_are_not_empty(cluster: Served, stream: Stream) -> None:
    status, body = cluster.get(_requests(stream.now)["active-users"][2])
    assert status == 200 and sum(day["users"] for day in orjson.loads(body)["month"]) > 100


def test_the_cluster_api_is_ready_with_its_consumer_heartbeats(cluster: Served) -> None:
    status, body = cluster.get("/readyz")
    # The consumer has stopped: its heartbeat is withdrawn, so the consumer check says so; Redis is fine.
    assert orjson.loads(body)["checks"]["redis"] == {"ok": True, "error": None}
    assert status in (200, 503)


def _samples(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in a Prometheus exposition, by their label part."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name):
            labels, _, value = line[len(name) :].rpartition(" ")
            found[labels] = float(value)
    return found


def test_both_services_export_the_cluster_clients_nodes_and_redirects(single: Served, cluster: Served) -> None:
    api = cluster.get("/metrics")[1].decode()
    for text, namespace in ((cluster.consumer_metrics, "activeusers_"), (api, "activeusers_api_")):
        name = namespace + "redis_cluster_"
        assert _samples(text, name + "nodes") == {'{role="primary"}': 3.0, '{role="replica"}': 0.0}
        # A cluster whose slots did not move: no command had to be sent again, the slot map never reloaded.
        assert _samples(text, name + "redirects_total") == dict.fromkeys(
            ('{reply="moved"}', '{reply="ask"}', '{reply="tryagain"}'), 0.0
        )
        assert _samples(text, name + "slot_map_reloads_total") == {'{result="ok"}': 0.0, '{result="failed"}': 0.0}
    assert "redis_cluster" not in single.consumer_metrics + single.get("/metrics")[1].decode()
