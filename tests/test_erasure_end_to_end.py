"""Erasure end to end, on a single Redis and on the real Redis Cluster: a stream in Kafka consumed by the real
consumer process, two real API processes that had cached every range, ``POST /api/v1/active-users/forget`` while
the rest of the stream (the forgotten users' events included) is being consumed. Once the stream drains, every
endpoint (retention and stickiness included) of both processes answers byte for byte as an API over an index fed
the stream without those users (the oracle: its own topic, consumer and API process), and the index equals the
oracle of the events without them, its counters equal to its bits; still so after ``active-users replay``;
``active-users forget --restore`` then a new event counts from then on only; the CLI shows a progress line for
many ids."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from activeusers.keys import KeySchema
from tests.support.events import Sent, generate, iso
from tests.support.indexstate import bucket_state
from tests.support.network import http_get
from tests.support.oracle import expected_buckets, index_label
from tests.support.processes import ConsumerProcess, cli_token, consumer_env, start_api
from tests.support.topics import Feeder, produce, wait_drained

pytestmark = pytest.mark.integration

ZONE = "Europe/Berlin"
RETENTION_DAYS = 30
GONE = ("user00007", "user00042")
FORGET = "/api/v1/active-users/forget"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Store:
    """Where the index lives: the Redis settings of the processes, a client of the tests, the key prefix."""

    redis: dict[str, str]
    client: Any
    prefix: str


@pytest.fixture(params=["single", "cluster"])
def store(request: pytest.FixtureRequest, stack: Any) -> Store:
    if request.param == "single":
        client, prefix = request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix")
        return Store({"REDIS_URL": stack.redis_url}, client, prefix)
    client, prefix = request.getfixturevalue("cluster_client"), request.getfixturevalue("cluster_prefix")
    return Store({"REDIS_URL": request.getfixturevalue("redis_cluster"), "REDIS_CLUSTER": "true"}, client, prefix)


def _env(stack: Any, store: Store, topic: str, prefix: str) -> dict[str, str]:
    common = {"ACTIVITY_TIMEZONE": ZONE, "RETENTION_DAYS": str(RETENTION_DAYS), "API_RATE_LIMIT": "100000"}
    return consumer_env(stack, topic, prefix, f"g-{uuid.uuid4().hex[:8]}", **store.redis, **common)


def _requests(now: int) -> list[str]:
    """Every endpoint over whole days, mid-day and past-retention ranges ending today, and several weeks' starts."""
    zone = ZoneInfo(ZONE)
    today = datetime.fromtimestamp(now / 1000, tz=zone).date()
    end = iso(int(datetime(today.year, today.month, today.day, 23, 59, 59, 999000, tzinfo=zone).timestamp() * 1000))
    spans = [f"start={iso(now - days * 86_400_000)}&end={end}" for days in (0, 1, 6, 29, 40)]
    spans.append(f"start={iso(now - 3 * 86_400_000 - 7_777_777)}&end={iso(now - 1_234_567)}")
    dashboard = "/api/v1/engagement-dashboard/users/"
    paths = [f"/api/v1/active-users/summary?{span}&format=csv" for span in spans]
    for name in ("active-users", "new-users", "users-by-time-of-the-day-in-a-week"):
        paths += [f"{dashboard}{name}?{span}" for span in spans]
    paths += [f"/api/v1/active-users/summary?{span}" for span in spans]
    paths += [f"/api/v1/active-users/stickiness?{span}" for span in spans]
    for cohort in ("first", "new", "active"):
        paths += [f"/api/v1/active-users/retention?{span}&period=day&cohort={cohort}" for span in spans]
    for days in (0, 3, 10, 20):
        start = iso(now - days * 86_400_000)
        paths += [
            f"{dashboard}chat-busier/hourly-data?start={start}",
            f"{dashboard}chat-busier/weekly-data?start={start}",
        ]
    return paths


def _answers(base: str, headers: Mapping[str, str], now: int) -> dict[str, bytes]:
    found = {}
    for path in _requests(now):
        status, body = http_get(base + path, headers)
        assert status == 200, (path, body)
        found[path] = body
    return found


def _post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``active-users ARGS`` as an operator runs it; it must succeed."""
    command = [sys.executable, "-m", "activeusers.cli", *args]
    done = subprocess.run(command, env=dict(env), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _of(records: list[Sent], users: tuple[str, ...]) -> list[Sent]:
    return [s for s in records if s.event is not None and s.event["userId"] in users]


def _without(records: list[Sent], users: tuple[str, ...]) -> list[Sent]:
    return [s for s in records if s.event is None or s.event["userId"] not in users]


def _login(user: str, now: int) -> Sent:
    event = {"type": "login", "userId": user, "ts": iso(now)}
    return Sent(user.encode(), orjson.dumps(event), event)


@dataclass
class Oracle:
    """The index fed the stream without the forgotten users, served by its own API process."""

    env: dict[str, str]
    base: str
    headers: dict[str, str]
    sent: list[Sent]

    def feed(self, records: list[Sent], log: Path) -> None:
        """Produce ``records`` to its topic and consume them with a real consumer process."""
        self.sent += records
        produce(self.env["KAFKA_BOOTSTRAP_SERVERS"], self.env["KAFKA_TOPIC"], records)
        consumer = ConsumerProcess(self.env, log)
        try:
            wait_drained(self.env["KAFKA_BOOTSTRAP_SERVERS"], self.env["KAFKA_GROUP_ID"], self.env["KAFKA_TOPIC"])
        finally:
            assert consumer.stop() == 0


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """API processes started by a test, stopped after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_forget_is_immediate_complete_and_lasting(stack, topic, store: Store, processes, tmp_path) -> None:
    now = int(time.time() * 1000)
    sent = generate(25, 4000, now, users=120, days=35, malformed_share=0.01, avoid_days_ago=(29, 32))
    first, rest = sent[:2000], sent[2000:]
    assert _of(first, GONE) and _of(rest[len(rest) // 2 :], GONE)
    env = _env(stack, store, topic(3), store.prefix)
    oracle_env = _env(stack, store, topic(3), store.prefix + "oracle:")
    oracle = Oracle(oracle_env, "", cli_token(oracle_env, "viewer"), [])
    oracle.feed(_without(sent, GONE), tmp_path / "oracle-consumer-1.log")
    api, oracle.base = start_api(oracle_env, tmp_path / "api-oracle.log")
    processes.append(api)
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"], first)
    consumer = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_GROUP_ID"], env["KAFKA_TOPIC"])
        viewer, dpo = cli_token(env, "viewer"), cli_token(env, "dpo", "forget-users")
        bases = []
        for name in ("a", "b"):
            api, base = start_api(env, tmp_path / f"api-{name}.log")
            processes.append(api)
            bases.append(base)
        warm = [_answers(base, viewer, now) for base in bases]  # both processes cache every range
        assert warm[0] == warm[1] and all(any(u.encode() in body for body in warm[0].values()) for u in GONE)
        _forget_while_consuming(env, rest, bases[0], dpo)
        _assert_as_the_oracle(bases, viewer, oracle, now)
        _assert_index(store, _without(sent, GONE), now)
        _cli(env, "replay")
        _assert_as_the_oracle(bases, viewer, oracle, now)
        _assert_index(store, _without(sent, GONE), now)
        _restore_then_count_from_now_on(env, oracle, bases, viewer, store, tmp_path)
        _many_ids_with_a_progress_line(env, store, oracle.sent)
    finally:
        assert consumer.stop() == 0


def _forget_while_consuming(env: dict[str, str], rest: list[Sent], base: str, dpo: Mapping[str, str]) -> None:
    """Feed the rest of the stream at a steady pace; forget the users a third of the way through; let it drain."""
    feeder = Feeder(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"], rest, chunk=100, pause_s=0.05)
    feeder.start()
    deadline = time.monotonic() + 60
    while feeder.done < len(rest) // 3:
        assert time.monotonic() < deadline and feeder.is_alive(), "the feeder stalled"
        time.sleep(0.05)
    body = orjson.dumps({"userIds": [*GONE, GONE[0]]})
    answer = _post(base + FORGET, body, {**dpo, "Content-Type": "application/json"})
    in_flight = feeder.done
    assert answer == (200, b'{"forgotten":2,"success":true}')
    feeder.finish()
    assert _of(rest[in_flight:], GONE), "no event of the forgotten users came after the erasure"
    wait_drained(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_GROUP_ID"], env["KAFKA_TOPIC"])


def _assert_as_the_oracle(bases: list[str], viewer: Mapping[str, str], oracle: Oracle, now: int) -> None:
    expected = _answers(oracle.base, oracle.headers, now)
    for base in bases:
        answers = _answers(base, viewer, now)
        assert [path for path in expected if answers[path] != expected[path]] == []


def _assert_index(store: Store, sent: list[Sent], now: int) -> dict[str, set[str]]:
    """The index holds exactly the events of ``sent`` (its counters equal to its bits: ``bucket_state``)."""
    state = bucket_state(store.client, KeySchema(store.prefix, ZONE))
    assert state == expected_buckets(sent, store.prefix, ZONE, now, RETENTION_DAYS)
    return state


def _restore_then_count_from_now_on(
    env: dict[str, str], oracle: Oracle, bases: list[str], viewer: Mapping[str, str], store: Store, tmp_path: Path
) -> None:
    user = GONE[0]
    done = _cli(env, "forget", "--restore", user)
    assert "forget --restore: 1 of 1 ids were forgotten" in done.stderr
    now = int(time.time() * 1000)
    login = _login(user, now)
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"], [login])
    oracle.feed([login], tmp_path / "oracle-consumer-2.log")
    wait_drained(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_GROUP_ID"], env["KAFKA_TOPIC"])
    _assert_as_the_oracle(bases, viewer, oracle, now)
    state = _assert_index(store, oracle.sent, now)
    local = datetime.fromtimestamp(now / 1000, tz=ZoneInfo(ZONE))
    today = local.date().isoformat()
    counted = {label for label, ids in state.items() if user in ids}
    assert counted == {index_label("day", today), index_label("hour", f"{today}T{local.hour:02d}")}


def _many_ids_with_a_progress_line(env: dict[str, str], store: Store, sent: list[Sent]) -> None:
    """Forgetting many users from the command line shows its progress, then the index is without them too."""
    users = tuple(f"user{n:05d}" for n in range(0, 120, 2))
    done = _cli(env, "forget", *users)
    assert re.search(r"\] +100\.0% (\d+)/\1 scripts", done.stderr), done.stderr
    assert f"forget complete: {len(users)} user ids forgotten" in done.stderr
    _assert_index(store, _without(sent, users), int(time.time() * 1000))
