"""The consumer against the real Kafka broker and Redis server: exact results under failures."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
import redis
from kafka.future import Future

from activeusers.keys import KeySchema
from consumer.deadletter import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from tests.support.events import MALFORMED_SAMPLES, Sent, generate
from tests.support.indexstate import bucket_state
from tests.support.network import SlowRelay, free_port, http_get
from tests.support.oracle import expected_buckets
from tests.support.parts import HELD, ScriptedWorker, stored
from tests.support.processes import ConsumerProcess, consumer_env
from tests.support.topics import Feeder, committed_offsets, end_offsets, produce, read_topic, wait_drained
from tests.support.waiting import wait_until

ZONE = "America/New_York"
RETENTION_DAYS = 30


def _now_ms() -> int:
    return int(time.time() * 1000)


def _expected(sent: list[Sent], prefix: str, now_ms: int) -> dict[str, set[str]]:
    return expected_buckets(sent, prefix, ZONE, now_ms, RETENTION_DAYS)


def _env(stack, topic_name: str, prefix: str, **extra: str) -> dict[str, str]:
    group = f"g-{uuid.uuid4().hex[:8]}"
    return consumer_env(
        stack, topic_name, prefix, group, ACTIVITY_TIMEZONE=ZONE, RETENTION_DAYS=str(RETENTION_DAYS), **extra
    )


def test_two_consumers_store_exactly_the_oracle(stack, topic, redis_prefix, redis_client, tmp_path):
    name = topic(4)
    now = _now_ms()
    sent = generate(7, 4000, now, days=40, malformed_share=0.03, avoid_days_ago=(29, 32))
    env = _env(stack, name, redis_prefix)
    produce(stack.kafka_bootstrap, name, sent)
    members = [ConsumerProcess(env, tmp_path / f"consumer{i}.log") for i in range(2)]
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        codes = [m.stop() for m in members]
    assert codes == [0, 0], [m.log_text()[-2000:] for m in members]

    expected = _expected(sent, redis_prefix, now)
    assert len(expected) > 100
    assert bucket_state(redis_client, KeySchema(redis_prefix, ZONE)) == expected

    # Delivery is at least once: a batch given up at a rebalance (or committed too late to count) is read and
    # dead-lettered again by the next owner. Every malformed record is dead-lettered, nothing else, each at
    # least once and always with its own bytes.
    malformed = {s.key for s in sent if s.event is None}
    assert malformed
    source = read_topic(stack.kafka_bootstrap, name, sum(end_offsets(stack.kafka_bootstrap, name).values()))
    expected_dead = {(r.partition, r.offset): r.value for r in source if r.key in malformed}
    assert len(expected_dead) == len(malformed)
    dlq = env["KAFKA_DLQ_TOPIC"]
    dead = read_topic(stack.kafka_bootstrap, dlq, sum(end_offsets(stack.kafka_bootstrap, dlq).values()))
    origins = [(int(dict(r.headers)[HEADER_PARTITION]), int(dict(r.headers)[HEADER_OFFSET])) for r in dead]
    assert set(origins) == expected_dead.keys()
    assert all(r.value == expected_dead[origin] for r, origin in zip(dead, origins, strict=True))
    logs = "".join(m.log_text() for m in members)
    assert "partitions assigned" in logs and "consumer stopped" in logs


def test_sigkill_mid_stream_then_restart_still_exact(stack, topic, redis_prefix, redis_client, tmp_path):
    name = topic(3)
    now = _now_ms()
    sent = generate(11, 6000, now, days=40, avoid_days_ago=(29, 32))
    # The killed member stays in the group until its session times out; keep that short.
    env = _env(stack, name, redis_prefix, BATCH_SIZE="100", KAFKA_SESSION_TIMEOUT="6s")
    produce(stack.kafka_bootstrap, name, sent[:3000])
    first = ConsumerProcess(env, tmp_path / "first.log")
    wait_until(
        lambda: sum(committed_offsets(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name).values()) >= 500,
        60,
        "the first member did not commit 500 records",
    )
    first.kill()
    partial = committed_offsets(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    assert sum(partial.values()) < 6000
    produce(stack.kafka_bootstrap, name, sent[3000:])
    second = ConsumerProcess(env, tmp_path / "second.log")
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        assert second.stop() == 0
    assert bucket_state(redis_client, KeySchema(redis_prefix, ZONE)) == _expected(sent, redis_prefix, now)


class _OffsetWatch:
    """The group's committed offsets of one topic, read every 50 ms on a thread; ``regressions`` lists every
    time a partition's committed offset went down."""

    def __init__(self, bootstrap: str, group: str, topic_name: str) -> None:
        from kafka.admin import KafkaAdminClient

        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-offset-watch")
        self._group, self._topic = group, topic_name
        self.latest: dict[int, int] = {}
        self.regressions: list[tuple[int, int, int]] = []  # partition, from, to
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            offsets = self._admin.list_group_offsets(self._group).get(self._group, {})
            now = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == self._topic}
            for partition, offset in now.items():
                if offset < self.latest.get(partition, -1):
                    self.regressions.append((partition, self.latest[partition], offset))
            self.latest = {**self.latest, **now}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._admin.close()


def _consumed(port: int) -> float:
    metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    return next(
        float(line.split()[1]) for line in metrics.splitlines() if line.startswith("activeusers_events_consumed_total ")
    )


@pytest.mark.parametrize("release", ["during the hand-over", "after the new owner committed"])
def test_a_rebalance_while_batches_are_stored_never_sets_the_group_back(
    stack, topic, redis_prefix, redis_client, tmp_path, release
):
    """Member A stores slowly (its Redis is behind a relay that delays each request by half a second), so whenever it
    polls a steady stream it has batches in flight, each reaching both partitions (polls are not full). Member B
    joins; as soon as A's partitions are revoked the relay holds A's store entirely, and releases it either a
    second into A's hand-over (which then finishes the batches and commits them before B starts) or only once
    B has stored and committed its partition (A gives its batches up after HAND_OVER_WAIT_S). Either way no
    commit of A's for B's partition lands after B's: the group's offsets never go back and end at the end."""
    name = topic(2)
    now = _now_ms()
    sent = generate(43, 20_000, now, days=5)
    env = _env(stack, name, redis_prefix, KAFKA_SESSION_TIMEOUT="6s")
    relay = SlowRelay(stack.redis_url, delay_s=0.5)
    feeder = Feeder(stack.kafka_bootstrap, name, sent, chunk=20, pause_s=0.05)
    a_port, b_port = free_port(), free_port()
    a_env = {**env, "REDIS_URL": relay.url, "REDIS_TIMEOUT": "60s", "CONSUMER_METRICS_PORT": str(a_port)}
    # A's own heartbeat is written once, at its start: afterwards only its store worker waits for the relay.
    a = ConsumerProcess({**a_env, "CONSUMER_HEARTBEAT": "1h", "CONSUMER_STALE": "2h"}, tmp_path / "a.log")
    b: ConsumerProcess | None = None
    watch = _OffsetWatch(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    feeder.start()
    try:
        wait_until(lambda: len(watch.latest) == 2, 60, "A committed nothing")
        b = ConsumerProcess({**env, "CONSUMER_METRICS_PORT": str(b_port)}, tmp_path / "b.log")
        wait_until(lambda: "partitions revoked" in a.log_text(), 60, "A's partitions were never revoked")
        relay.pause()
        if release == "during the hand-over":
            time.sleep(1.0)  # the scenario: the store comes back while the group waits for A
            relay.resume()
        wait_until(lambda: bool(b.owned()), 60, "B was assigned nothing")
        (moved,) = {int(label.rsplit("-", 1)[1]) for label in b.owned()}
        kept = 1 - moved
        feeder.stop()
        ends = end_offsets(stack.kafka_bootstrap, name)
        wait_until(lambda: watch.latest.get(moved) == ends[moved], 60, f"B did not commit the end: {watch.latest}")
        relay.resume()
        # A answers its batches in order, those in flight at the rebalance first: once A has committed the end of
        # its own partition, whatever A commits for them has landed.
        wait_until(lambda: watch.latest.get(kept) == ends[kept], 90, f"A did not commit the end: {watch.latest}")
        settled = committed_offsets(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
        consumed = _consumed(a_port) + _consumed(b_port)
    finally:
        feeder.stop()
        codes = [a.stop()] + ([b.stop()] if b else [])
        watch.close()
        relay.close()
    assert codes == [0, 0], [a.log_text()[-3000:], b.log_text()[-3000:] if b else ""]
    assert settled == ends, f"partition {moved}, which went from A to B, was set back"
    assert watch.regressions == []
    assert bucket_state(redis_client, KeySchema(redis_prefix, ZONE)) == _expected(
        sent[: feeder.done], redis_prefix, now
    )
    if release == "during the hand-over":
        assert consumed == sum(ends.values()), "B read again what A had stored before the rebalance"


class _OwnRedis:
    """A private redis-server with AOF (fsync always), so a stop and restart keeps every acknowledged write."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, 10, "private redis-server did not start")
        finally:
            client.close()

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    own = _OwnRedis(tmp_path)
    own.start()
    yield own
    if own.process is not None and own.process.poll() is None:
        own.stop()


def test_redis_outage_stops_commits_and_loses_nothing(stack, topic, own_redis, tmp_path):
    own = own_redis
    client = redis.Redis.from_url(own.url)
    name = topic(3)
    prefix = "outage:"
    now = _now_ms()
    sent = generate(23, 4000, now, days=40, avoid_days_ago=(29, 32))
    env = _env(stack, name, prefix, REDIS_URL=own.url, REDIS_TIMEOUT="500ms")
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        produce(stack.kafka_bootstrap, name, sent[:2000])
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
        own.stop()
        before = committed_offsets(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
        produce(stack.kafka_bootstrap, name, sent[2000:])
        wait_until(lambda: "redis write failed, retrying" in member.log_text(), 60, "no write failed during the outage")
        assert member.process.poll() is None, "the consumer must survive a Redis outage"
        assert committed_offsets(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name) == before
        own.start()
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        code = member.stop()
    try:
        assert code == 0
        log = member.log_text()
        assert "redis unavailable" in log and "redis recovered" in log
        assert bucket_state(client, KeySchema(prefix, ZONE)) == _expected(sent, prefix, now)
    finally:
        client.close()


def test_each_malformed_record_is_dead_lettered_and_the_partition_moves_on(
    stack, topic, redis_prefix, redis_client, tmp_path
):
    name = topic(1)
    now = _now_ms()
    valid = generate(5, 2, now, days=2)
    records = [valid[0]] + [Sent(b"k", value, None) for _, value in MALFORMED_SAMPLES] + [valid[1]]
    env = _env(stack, name, redis_prefix)
    produce(stack.kafka_bootstrap, name, records)
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        assert member.stop() == 0
    dead = read_topic(stack.kafka_bootstrap, env["KAFKA_DLQ_TOPIC"], len(MALFORMED_SAMPLES))
    assert len(dead) == len(MALFORMED_SAMPLES)
    for record, (reason, value) in zip(sorted(dead, key=lambda r: r.offset), MALFORMED_SAMPLES, strict=True):
        headers = {k: v.decode() for k, v in record.headers}
        assert headers[HEADER_REASON] == reason
        assert headers[HEADER_TOPIC] == name
        assert headers[HEADER_PARTITION] == "0"
        assert int(headers[HEADER_OFFSET]) == 1 + MALFORMED_SAMPLES.index((reason, value))
        assert record.value == value
        assert record.key == b"k"
    assert bucket_state(redis_client, KeySchema(redis_prefix, ZONE)) == _expected(records, redis_prefix, now)


def test_replay_rebuilds_a_wiped_store(stack, topic, redis_prefix, redis_client, tmp_path):
    name = topic(2)
    now = _now_ms()
    sent = generate(31, 3000, now, days=40, malformed_share=0.02, avoid_days_ago=(29, 32))
    env = _env(stack, name, redis_prefix)
    produce(stack.kafka_bootstrap, name, sent)
    result = subprocess.run(
        [*ConsumerProcess.command("replay")], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replay complete: 3000 records" in result.stderr
    assert "100.0%" in result.stderr
    assert bucket_state(redis_client, KeySchema(redis_prefix, ZONE)) == _expected(sent, redis_prefix, now)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_signals_stop_cleanly_and_withdraw_the_heartbeat(
    stack, topic, redis_prefix, redis_client, tmp_path, signal_name
):
    import signal as signals

    name = topic(1)
    env = _env(stack, name, redis_prefix)
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    keys = KeySchema(redis_prefix, ZONE)
    wait_until(lambda: redis_client.zrange(keys.heartbeats(), 0, -1), 30, "the member wrote no heartbeat")
    member.process.send_signal(getattr(signals, signal_name))
    assert member.stop() == 0
    assert redis_client.zrange(keys.heartbeats(), 0, -1) == []
    assert list(redis_client.scan_iter(match=keys.heartbeat("*"))) == []


def test_health_and_metrics_endpoints_report_progress(stack, topic, redis_prefix, tmp_path):
    port = free_port()
    name = topic(2)
    now = _now_ms()
    sent = generate(61, 500, now, days=3, malformed_share=0.05)
    env = _env(stack, name, redis_prefix, CONSUMER_METRICS_PORT=str(port))
    produce(stack.kafka_bootstrap, name, sent)
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
        health = orjson.loads(http_get(f"http://127.0.0.1:{port}/healthz")[1])
        metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    finally:
        assert member.stop() == 0
    assert health["status"] == "ok" and health["redis"] is True
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    malformed = sum(1 for s in sent if s.event is None)
    assert values["activeusers_events_consumed_total"] == len(sent)
    assert sum(v for k, v in values.items() if k.startswith("activeusers_events_dead_lettered_total")) == malformed
    assert values["activeusers_redis_up"] == 1
    assert values["activeusers_assigned_partitions"] == 2
    assert values[f'activeusers_consumer_lag{{partition="{name}-0"}}'] == 0
    assert values["activeusers_last_stored_event_timestamp_seconds"] > (now - 4 * 86_400_000) / 1000


class _IdleConsumer:
    """Enough of a KafkaConsumer for the loop's own logic: subscribing, polling, committing (recorded, and
    answered at once), positions (none known), and the sleep of kafka-python's IO loop (asyncio's here)."""

    def __init__(self):
        self.commits: list[dict] = []
        self.sync_commits: list[dict] = []
        self.polls = 0
        self._net = SimpleNamespace(sleep=asyncio.sleep)

    def subscribe(self, topics, listener):
        self.topics = topics

    def commit_async(self, offsets, callback=None):
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})
        return Future().success(None)

    def commit(self, offsets, timeout_ms):
        self.sync_commits.append({tp: meta.offset for tp, meta in offsets.items()})

    def position(self, tp, timeout_ms):
        return None

    def highwater(self, tp):
        return None


def _loop(consumer, stop, worker=None):
    import fakeredis

    from activeusers.heartbeats import Heartbeats
    from activeusers.settings import Settings
    from consumer.loop import IngestLoop
    from consumer.metrics import ConsumerMetrics

    heartbeats = Heartbeats(fakeredis.FakeRedis(), KeySchema("t:", "UTC"), Settings())
    return IngestLoop(Settings(), consumer, worker, heartbeats, ConsumerMetrics(), stop, "m")


TP = namedtuple("TP", "topic partition")
Record = namedtuple("Record", "topic partition offset key value")
P0, P1 = TP("t", 0), TP("t", 1)


def _poll(**offsets: int) -> dict:
    """One poll's records: ``p0=5`` is partition 0's record at offset 5."""
    return {
        TP("t", int(name[1:])): [Record("t", int(name[1:]), offset, None, b"{}")] for name, offset in offsets.items()
    }


async def test_a_revocation_finishes_the_batches_in_flight_and_commits_them_before_the_group_moves_on():
    from consumer.shutdown import StopRequest

    consumer, worker = _IdleConsumer(), ScriptedWorker([HELD, stored(1), stored(1)])
    loop = _loop(consumer, StopRequest(), worker)
    await loop.assignment.on_partitions_assigned({P0, P1})
    loop.process(_poll(p0=5))
    loop.process(_poll(p0=6, p1=9))
    asyncio.get_running_loop().call_later(0.05, worker.release)  # the store answers while the group waits
    await loop.assignment.on_partitions_revoked({P0, P1})
    # Each batch's own commit, then the hand-over's, answered before the listener returns.
    assert consumer.commits == [{P0: 6}, {P0: 7, P1: 10}, {P0: 7, P1: 10}]
    assert loop.assignment.owned == set()


async def test_batches_not_answered_in_time_are_given_up_and_commit_nothing_when_answered(monkeypatch, caplog):
    from consumer import loop as module
    from consumer.shutdown import StopRequest

    monkeypatch.setattr(module, "HAND_OVER_WAIT_S", 0.05)
    consumer, worker = _IdleConsumer(), ScriptedWorker([stored(1), HELD, stored(1)])
    loop = _loop(consumer, StopRequest(), worker)
    await loop.assignment.on_partitions_assigned({P0, P1})
    loop.process(_poll(p0=3))
    assert loop.drain() and consumer.commits == [{P0: 4}]
    loop.process(_poll(p0=4, p1=9))  # stuck: Redis is down
    await loop.assignment.on_partitions_revoked({P0, P1})
    assert consumer.commits[1:] == [{P0: 4}], "the hand-over commits what was stored, nothing more"
    assert "batches in flight given up at a rebalance; they will be read again" in caplog.messages
    await loop.assignment.on_partitions_assigned({P0})  # kafka-python keeps its fetch position past offset 4
    worker.release()
    assert loop.drain()
    assert consumer.commits[2:] == [], "the batch is stored now, but polled before the rebalance"


async def test_lost_partitions_give_the_batches_in_flight_up_without_waiting():
    from consumer.shutdown import StopRequest

    consumer, worker = _IdleConsumer(), ScriptedWorker([HELD, stored(1)])
    loop = _loop(consumer, StopRequest(), worker)
    await loop.assignment.on_partitions_assigned({P0})
    loop.process(_poll(p0=3))
    await loop.assignment.on_partitions_lost({P0})  # returns although the batch is held: nothing waited for
    await loop.assignment.on_partitions_assigned({P0})
    worker.release()
    assert loop.drain()
    assert consumer.commits == []


async def test_the_revocation_at_close_after_the_final_commit_sends_nothing_more():
    from consumer.shutdown import StopRequest

    class OnePollConsumer(_IdleConsumer):
        def poll(self, timeout_ms):
            self.polls += 1
            if self.polls == 1:
                return _poll(p0=3)
            stop.set()
            return {}

    stop = StopRequest()
    consumer = OnePollConsumer()
    loop = _loop(consumer, stop, ScriptedWorker([stored(1)]))
    await loop.assignment.on_partitions_assigned({P0})
    await asyncio.to_thread(loop.run)
    assert consumer.sync_commits == [{P0: 4}]
    await loop.assignment.on_partitions_revoked({P0})  # what KafkaConsumer.close() calls
    assert consumer.sync_commits == [{P0: 4}] and len(consumer.commits) == 1


def test_a_poll_that_raises_is_retried_not_fatal():
    from kafka.errors import KafkaConnectionError

    from consumer.polling import Poller
    from consumer.shutdown import StopRequest

    class FlakyConsumer(_IdleConsumer):
        def poll(self, timeout_ms):
            self.polls += 1
            if self.polls == 1:
                raise KafkaConnectionError("111 ECONNREFUSED")  # as kafka-python does while a broker restarts
            stop.set()
            return {}

    stop = StopRequest()
    consumer = FlakyConsumer()
    loop = _loop(consumer, stop)
    metrics = loop._poller._metrics
    loop._poller = Poller(consumer, metrics, stop, delays=lambda: lambda: 0.0)
    loop.run()
    assert consumer.polls == 2
    assert metrics.kafka_errors._value.get() == 1


def test_an_undecodable_fetch_stops_the_loop_without_polling_again():
    from kafka.errors import UnsupportedCodecError
    from kafka.structs import TopicPartition

    from consumer.shutdown import StopRequest

    class UndecodableConsumer(_IdleConsumer):
        def __init__(self):
            super().__init__()
            # kafka-python's fetcher, holding the partition records whose decoding failed
            records = type("R", (), {"topic_partition": TopicPartition("t", 1), "next_fetch_offset": 42})()
            self._fetcher = type("F", (), {"_next_partition_records": records})()

        def poll(self, timeout_ms):
            self.polls += 1
            raise UnsupportedCodecError("Libraries for snappy compression codec not found")

    consumer, stop = UndecodableConsumer(), StopRequest()
    loop = _loop(consumer, stop)
    loop.run()
    assert consumer.polls == 1, "a second poll would spin inside kafka-python"
    assert stop.is_set() and consumer.commits == []
    assert (loop.failure.topic, loop.failure.partition, loop.failure.offset) == ("t", 1, 42)
    ok, detail = loop.health()
    assert not ok
    assert detail["error"] == (
        "cannot decode the records of t-1 at offset 42: "
        "UnsupportedCodecError: Libraries for snappy compression codec not found"
    )
    metrics = loop._poller._metrics
    assert metrics.undecodable.labels("t-1")._value.get() == 1
    assert metrics.kafka_errors._value.get() == 0


class _LateSeed:
    """A TCP forwarder to a cluster node on a port of its own that listens only once :meth:`open` is called: a
    seed node that is unreachable first, then answers (the other nodes are reached directly, as the slot map
    names them)."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._server: socket.socket | None = None

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                near, _ = server.accept()
                far = socket.create_connection(("127.0.0.1", self._target))
                for source, sink in ((near, far), (far, near)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError), source, sink:
            while chunk := source.recv(65536):
                sink.sendall(chunk)


def test_a_consumer_started_while_the_cluster_is_unreachable_waits_for_it(
    stack, topic, redis_cluster, cluster_prefix, cluster_client, tmp_path
):
    name = topic(2)
    now = _now_ms()
    sent = generate(97, 1500, now, days=40, avoid_days_ago=(29, 32))
    seed = _LateSeed(int(redis_cluster.rsplit(":", 1)[1].split("/")[0]))
    port = free_port()
    env = _env(stack, name, cluster_prefix, CONSUMER_METRICS_PORT=str(port), REDIS_CLUSTER="true")
    env["REDIS_URL"] = f"redis://127.0.0.1:{seed.port}/0"  # nothing listens there yet
    produce(stack.kafka_bootstrap, name, sent)
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_until(lambda: member.log_text().count("redis unreachable; retrying") >= 2, 30, "no retried slot map")
        assert member.process.poll() is None, "the consumer must wait for the cluster, not exit"
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        assert (status, orjson.loads(body)["error"]) == (503, "Redis has not answered yet")
        seed.open()
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        code = member.stop()
        seed.close()
    assert code == 0, member.log_text()[-3000:]
    assert bucket_state(cluster_client, KeySchema(cluster_prefix, ZONE)) == _expected(sent, cluster_prefix, now)
