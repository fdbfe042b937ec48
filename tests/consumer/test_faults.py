"""Fault injection with the real services: after every fault and once the stream drains, Redis equals the
oracle computed from exactly what was sent: zero lost, zero extra.

Broker and Redis outages use a private stack (its own broker and redis-server, started by ``dev/stack`` in a
temporary STACK_DIR) so that stopping them disturbs no other test.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis
from kafka.admin import KafkaAdminClient, NewTopic

from activeusers.keys import KeySchema
from consumer.deadletter import HEADER_REASON
from tests.support.environment import REPO_ROOT
from tests.support.events import MALFORMED_SAMPLES, Sent, generate
from tests.support.indexstate import bucket_state
from tests.support.network import http_get
from tests.support.oracle import activity, expected_buckets
from tests.support.processes import ConsumerProcess, cli_token, consumer_env, start_api
from tests.support.topics import Feeder, committed_offsets, produce, read_topic, wait_drained
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # stops and restarts a private broker and Redis

ZONE = "Europe/Berlin"
RETENTION_DAYS = 30
STACK_SCRIPT = REPO_ROOT / "dev" / "stack"


@dataclass
class PrivateStack:
    """A broker and a redis-server (with AOF) of this module's own, to stop and restart at will."""

    directory: Path
    kafka_bootstrap: str
    redis_url: str

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, str(STACK_SCRIPT), *args],
            env={**os.environ, "STACK_DIR": str(self.directory)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def up(self) -> None:
        """Start whatever is not running (a restarted service keeps its data and port)."""
        self._run("up", "--redis-aof")

    def signal(self, service: str, signum: int) -> None:
        """Send ``signum`` to the service's process and wait until it is gone."""
        pid = int((self.directory / f"{service}.pid").read_text().split()[0])
        os.kill(pid, signum)

        def gone() -> bool:
            return not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)

        wait_until(gone, 30, f"{service} (pid {pid}) did not stop")

    def down(self) -> None:
        self._run("down", "--purge")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


@pytest.fixture(scope="module")
def private_stack(stack, tmp_path_factory) -> Iterator[PrivateStack]:
    directory = tmp_path_factory.mktemp("private-stack")
    private = PrivateStack(directory, "", "")
    try:
        private.up()
        lines = (directory / "env").read_text().splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        private.kafka_bootstrap = values["KAFKA_BOOTSTRAP_SERVERS"]
        private.redis_url = values["REDIS_URL"]
        yield private
    finally:
        private.down()


def _create_topic(bootstrap: str, partitions: int) -> str:
    name = f"faults-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def _env(bootstrap: str, redis_url: str, topic: str, prefix: str, **extra: str) -> dict[str, str]:
    stack = type("S", (), {"kafka_bootstrap": bootstrap, "redis_url": redis_url})
    return consumer_env(
        stack,
        topic,
        prefix,
        f"g-{uuid.uuid4().hex[:8]}",
        ACTIVITY_TIMEZONE=ZONE,
        RETENTION_DAYS=str(RETENTION_DAYS),
        BATCH_SIZE="200",
        **extra,
    )


def _assert_exact(client: redis.Redis, sent: list[Sent], prefix: str, now: int) -> None:
    """The day sets and the index (bitmaps decoded through the ids hashes, numbering dense) equal the oracle."""
    expected = expected_buckets(sent, prefix, ZONE, now, RETENTION_DAYS)
    assert len(expected) > 50
    assert sum(label.startswith("index:") for label in expected) > 50  # days, hours and new users of the index
    assert bucket_state(client, KeySchema(prefix, ZONE)) == expected


def test_broker_stopped_and_restarted_during_a_stream(private_stack, tmp_path):
    topic = _create_topic(private_stack.kafka_bootstrap, 3)
    now = int(time.time() * 1000)
    sent = generate(41, 6000, now, days=40, malformed_share=0.02, avoid_days_ago=(29, 32))
    env = _env(private_stack.kafka_bootstrap, private_stack.redis_url, topic, "broker:")
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    feeder = Feeder(private_stack.kafka_bootstrap, topic, sent)
    feeder.start()
    try:
        wait_until(lambda: feeder.done >= 1500, 60, "the feeder did not get going")
        private_stack.signal("kafka", signal.SIGKILL)
        time.sleep(3)  # the point: an outage of some seconds, through which the consumer must live
        assert member.process.poll() is None, "the consumer must survive a broker outage"
        private_stack.up()
        feeder.finish()
        wait_drained(private_stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], topic, timeout_s=180)
    finally:
        code = member.stop()
    assert code == 0, member.log_text()[-3000:]
    client = redis.Redis.from_url(private_stack.redis_url, decode_responses=True)
    try:
        _assert_exact(client, sent, "broker:", now)
    finally:
        client.close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, body = http_get(url, headers)
    return status, orjson.loads(body), time.monotonic() - started


def test_redis_stopped_and_restarted_during_a_stream_and_the_api_says_503(private_stack, tmp_path):
    topic = _create_topic(private_stack.kafka_bootstrap, 3)
    now = int(time.time() * 1000)
    sent = generate(43, 6000, now, days=40, avoid_days_ago=(29, 32))
    env = _env(private_stack.kafka_bootstrap, private_stack.redis_url, topic, "redis:", REDIS_TIMEOUT="500ms")
    headers = cli_token(env, "ops")
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    api, base = start_api({**env, "REDIS_TIMEOUT": "1s"}, tmp_path / "api.log")
    query = (
        f"{base}/api/v1/engagement-dashboard/users/active-users"
        "?start=2020-01-01T00:00:00.000Z&end=2030-01-01T00:00:00.000Z"
    )
    feeder = Feeder(private_stack.kafka_bootstrap, topic, sent)
    feeder.start()
    try:
        wait_until(lambda: feeder.done >= 1500, 60, "the feeder did not get going")
        assert _get(query, headers)[0] == 200
        private_stack.signal("redis", signal.SIGTERM)  # a clean stop: AOF is flushed
        status, body, seconds = _get(query, headers)
        assert (status, body["success"]) == (503, False)
        assert seconds < 5, "the API must answer within its Redis timeout, not hang"
        status, body, _ = _get(base + "/readyz")
        assert status == 503 and body["checks"]["redis"]["ok"] is False
        wait_until(lambda: "redis write failed, retrying" in member.log_text(), 60, "no write failed during the outage")
        assert member.process.poll() is None, "the consumer must survive a Redis outage"
        private_stack.up()
        wait_until(lambda: _get(query, headers)[0] == 200, 30, "the API did not recover by itself")
        feeder.finish()
        wait_drained(private_stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], topic, timeout_s=120)
        status, body, _ = _get(query, headers)  # the ids the API answers after the outage: the oracle's
    finally:
        code = member.stop()
        api.terminate()
        api.wait(timeout=15)
    assert code == 0, member.log_text()[-3000:]
    assert "redis unavailable" in member.log_text()
    days = activity((s.event for s in sent), ZoneInfo(ZONE), now, RETENTION_DAYS).days
    assert status == 200
    answered = {date(e["year"], e["month"], e["day"]): e["usersList"] for e in body["month"]}
    assert answered == {day: sorted(users) for day, users in days.items() if users}
    assert all(e["users"] == len(e["usersList"]) for e in body["month"])
    client = redis.Redis.from_url(private_stack.redis_url, decode_responses=True)
    try:
        _assert_exact(client, sent, "redis:", now)
    finally:
        client.close()


def test_consumer_killed_at_five_random_points_and_restarted(stack, topic, redis_prefix, redis_client, tmp_path):
    name = topic(3)
    now = int(time.time() * 1000)
    sent = generate(47, 8000, now, days=40, malformed_share=0.01, avoid_days_ago=(29, 32))
    # A killed member stays in the group until its session times out; keep that short so rounds do not wait.
    env = _env(stack.kafka_bootstrap, stack.redis_url, name, redis_prefix, KAFKA_SESSION_TIMEOUT="6s")
    # Paced to outlast the five rounds (each waits out the session of the member killed before it).
    feeder = Feeder(stack.kafka_bootstrap, name, sent, pause_s=1.0)
    feeder.start()
    rng = random.Random(5)
    progress = [0]

    def committed() -> int:
        return sum(committed_offsets(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name).values())

    for round_ in range(5):
        member = ConsumerProcess(env, tmp_path / f"consumer{round_}.log")
        # Each kill lands at a random point of consuming, not of starting up: a member joins only once the
        # session of the one killed before it has timed out, and on a loaded machine a fixed sleep after the
        # start can end every member before it stores anything (then the kills prove nothing).
        wait_until(lambda: committed() > progress[-1] or not feeder.is_alive(), 90, f"member {round_} never committed")
        time.sleep(rng.uniform(0.0, 1.0))
        member.kill()
        progress.append(committed())
    assert progress[-1] > 0, "no killed member ever committed: the kills did not land mid-stream"
    feeder.finish()
    last = ConsumerProcess(env, tmp_path / "last.log")
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name, timeout_s=120)
    finally:
        assert last.stop() == 0
    _assert_exact(redis_client, sent, redis_prefix, now)


def test_two_members_one_killed_the_other_takes_over(stack, topic, redis_prefix, redis_client, tmp_path):
    name = topic(4)
    now = int(time.time() * 1000)
    sent = generate(53, 6000, now, days=40, avoid_days_ago=(29, 32))
    env = _env(stack.kafka_bootstrap, stack.redis_url, name, redis_prefix, KAFKA_SESSION_TIMEOUT="6s")
    survivor = ConsumerProcess(env, tmp_path / "survivor.log")
    victim = ConsumerProcess(env, tmp_path / "victim.log")
    feeder = Feeder(stack.kafka_bootstrap, name, sent)
    everything = {f"{name}-{p}" for p in range(4)}
    feeder.start()
    try:
        # Both members must hold partitions before the kill: a victim killed before the survivor joined would
        # leave nothing to take over (the survivor's first assignment would already be everything).
        wait_until(
            lambda: survivor.owned() and victim.owned() and survivor.owned() | victim.owned() == everything,
            60,
            "the two members never shared the partitions",
        )
        wait_until(lambda: feeder.done >= 2000, 60, "the feeder did not get going")
        taken = victim.owned()
        victim.kill()
        feeder.finish()
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name, timeout_s=120)
        assert taken and survivor.owned() == everything, "the survivor never took the partitions over"
    finally:
        assert survivor.stop() == 0
    _assert_exact(redis_client, sent, redis_prefix, now)


def test_a_flood_of_malformed_records_is_dead_lettered_and_the_rest_stored(
    stack, topic, redis_prefix, redis_client, tmp_path
):
    name = topic(3)
    now = int(time.time() * 1000)
    sent = generate(59, 10000, now, days=40, malformed_share=0.10, avoid_days_ago=(29, 32))
    malformed = [s for s in sent if s.event is None]
    assert 800 < len(malformed) < 1200
    env = _env(stack.kafka_bootstrap, stack.redis_url, name, redis_prefix)
    produce(stack.kafka_bootstrap, name, sent)
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        assert member.stop() == 0
    _assert_exact(redis_client, sent, redis_prefix, now)
    dead = read_topic(stack.kafka_bootstrap, env["KAFKA_DLQ_TOPIC"], len(malformed))
    assert len(dead) == len(malformed)
    reason_of = {value: reason for reason, value in MALFORMED_SAMPLES}
    assert sorted(dict(r.headers)[HEADER_REASON].decode() for r in dead) == sorted(
        reason_of[s.value] for s in malformed
    )


def test_sigterm_while_the_broker_is_down_ends_the_consumer_in_time(private_stack, tmp_path):
    topic = _create_topic(private_stack.kafka_bootstrap, 2)
    now = int(time.time() * 1000)
    sent = generate(61, 1500, now, days=5)
    produce(private_stack.kafka_bootstrap, topic, sent)
    env = _env(private_stack.kafka_bootstrap, private_stack.redis_url, topic, "stopping:")
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(private_stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], topic)
        private_stack.signal("kafka", signal.SIGKILL)
        time.sleep(3)  # the point: polls, heartbeats and commits fail for some seconds before the SIGTERM
        assert member.process.poll() is None, "the consumer must wait for the broker"
        started = time.monotonic()
        member.process.send_signal(signal.SIGTERM)
        code = member.stop(timeout_s=30)
        seconds = time.monotonic() - started
    finally:
        private_stack.up()
    assert code == 0, member.log_text()[-3000:]
    assert seconds < 10, f"SIGTERM took {seconds:.1f} s with the broker down"
    # Everything was stored and committed before the outage; nothing on the way out undid it.
    wait_drained(private_stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], topic, timeout_s=60)
    assert "consumer stopped" in member.log_text()
