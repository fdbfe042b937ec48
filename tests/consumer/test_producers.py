"""Producers the project did not write, against the real broker and the real consumer process: kcat (librdkafka)
with every compression codec, kafka-python's transactional producer, and fetches the consumer cannot decode."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from activeusers.keys import KeySchema
from consumer.deadletter import HEADER_REASON
from consumer.shutdown import EXIT_UNDECODABLE
from tests.support.environment import REPO_ROOT
from tests.support.events import Sent, generate
from tests.support.indexstate import bucket_state
from tests.support.network import free_port, http_get
from tests.support.oracle import expected_buckets
from tests.support.processes import ConsumerProcess, consumer_env
from tests.support.topics import committed_offsets, end_offsets, kcat_produce, read_topic, wait_drained
from tests.support.waiting import wait_until

ZONE = "Europe/Berlin"
RETENTION_DAYS = 30
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# Python modules whose absence makes kafka-python unable to decode a codec (its extras install them).
CODEC_MODULES = {"snappy": "snappy", "lz4": "lz4", "zstd": "zstandard"}


def _env(stack, name: str, prefix: str, **extra: str) -> dict[str, str]:
    return consumer_env(
        stack,
        name,
        prefix,
        f"g-{uuid.uuid4().hex[:8]}",
        ACTIVITY_TIMEZONE=ZONE,
        RETENTION_DAYS=str(RETENTION_DAYS),
        **extra,
    )


def _run_until_drained(stack, env: dict[str, str], name: str, log: Path) -> None:
    member = ConsumerProcess(env, log)
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        code = member.stop()
    assert code == 0, member.log_text()[-3000:]


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_with_every_codec_stores_exactly_the_oracle(stack, topic, redis_prefix, redis_client, tmp_path, codec):
    name = topic(3)
    now = int(time.time() * 1000)
    sent = generate(71, 3000, now, days=40, malformed_share=0.02, avoid_days_ago=(29, 32))
    kcat_produce(stack.kafka_bootstrap, name, sent, codec, headers={"producer": "kcat", "trace-id": "abc"})
    assert sum(end_offsets(stack.kafka_bootstrap, name).values()) == len(sent)
    env = _env(stack, name, redis_prefix)
    _run_until_drained(stack, env, name, tmp_path / "consumer.log")
    expected = expected_buckets(sent, redis_prefix, ZONE, now, RETENTION_DAYS)
    assert len(expected) > 50
    assert bucket_state(redis_client, KeySchema(redis_prefix, ZONE)) == expected
    malformed = [s for s in sent if s.event is None]
    dead = read_topic(stack.kafka_bootstrap, env["KAFKA_DLQ_TOPIC"], len(malformed))
    assert sorted(r.value or b"" for r in dead) == sorted(s.value or b"" for s in malformed)
    tombstones = [r for r in dead if r.value is None]
    assert tombstones and {dict(r.headers)[HEADER_REASON] for r in tombstones} == {b"empty"}


def _transactions(bootstrap: str, name: str, rounds: list[tuple[list[Sent], bool]]) -> None:
    """Each round in its own transaction, committed or aborted; an aborted round is flushed first, so that its
    records are in the log (and a read_uncommitted consumer sees them)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{name}", linger_ms=5)
    try:
        producer.init_transactions()
        for records, commit in rounds:
            producer.begin_transaction()
            for r in records:
                producer.send(name, key=r.key, value=r.value)
            producer.flush(timeout=30)
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
    finally:
        producer.close(timeout=10)


def _aborted_users(sent: list[Sent]) -> list[Sent]:
    """The same events for users of their own (``aborted-...``), so that counting any of them shows."""
    renamed = []
    for s in sent:
        if s.event is None:
            renamed.append(s)
            continue
        event = {**s.event, "userId": "aborted-" + s.event["userId"]}
        renamed.append(Sent(event["userId"].encode(), orjson.dumps(event), event))
    return renamed


def _metric_values(port: int) -> dict[str, float]:
    text = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_a_transactional_producer_counts_only_committed_transactions(
    stack, topic, redis_prefix, redis_client, tmp_path, isolation
):
    name = topic(2)
    now = int(time.time() * 1000)
    rounds: list[tuple[list[Sent], bool]] = []
    for i in range(6):
        chunk = generate(300 + i, 400, now, days=10, malformed_share=0.01)
        commit = i % 3 != 1  # transactions 1 and 4 are aborted
        rounds.append((chunk if commit else _aborted_users(chunk), commit))
    _transactions(stack.kafka_bootstrap, name, rounds)
    committed_sent = [s for chunk, commit in rounds if commit for s in chunk]
    everything = [s for chunk, _ in rounds for s in chunk]
    # The aborted records are in the log: a consumer reading uncommitted data would count them.
    in_log = read_topic(stack.kafka_bootstrap, name, len(everything))
    assert sum(1 for r in in_log if r.key and r.key.startswith(b"aborted-")) == sum(
        1 for s in everything if s.key and s.key.startswith(b"aborted-")
    )

    port = free_port()
    env = {"KAFKA_ISOLATION_LEVEL": isolation} if isolation != "read_committed" else {}
    env = _env(stack, name, redis_prefix, CONSUMER_METRICS_PORT=str(port), **env)
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        # Every partition ends with a transaction marker: the group must still reach the end offsets.
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
        wait_until(
            lambda: (
                [v for k, v in _metric_values(port).items() if k.startswith("activeusers_consumer_lag")] == [0.0, 0.0]
            ),
            10,
            "lag did not reach 0 for both partitions",
        )
    finally:
        code = member.stop()
    assert code == 0, member.log_text()[-3000:]
    counted = committed_sent if isolation == "read_committed" else everything
    assert bucket_state(redis_client, KeySchema(redis_prefix, ZONE)) == expected_buckets(
        counted, redis_prefix, ZONE, now, RETENTION_DAYS
    )


def _codec_blocker(directory: Path, module: str) -> Path:
    """A directory to put first on PYTHONPATH, in which importing ``module`` fails as if it were not installed."""
    directory.mkdir()
    (directory / f"{module}.py").write_text(f'raise ImportError("{module} is blocked by the test")\n')
    return directory


class _HealthWatcher(threading.Thread):
    """Polls the consumer's /healthz and /metrics and keeps the first unhealthy answer (with the metrics then)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.unhealthy: dict | None = None
        self.metrics: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and self.unhealthy is None:
            try:
                status, body = http_get(f"http://127.0.0.1:{self.port}/healthz", timeout_s=2)
                if status == 503 and b"cannot decode" in body:
                    self.unhealthy = orjson.loads(body)
                    self.metrics = _metric_values(self.port)
            except OSError:
                pass
            time.sleep(0.01)


@pytest.mark.parametrize("codec", sorted(CODEC_MODULES))
def test_a_codec_the_client_cannot_decode_ends_the_consumer_and_loses_nothing(
    stack, topic, redis_prefix, redis_client, tmp_path, codec
):
    name = topic(1)
    now = int(time.time() * 1000)
    before, compressed, after = (generate(seed, 500, now, days=10) for seed in (81, 82, 83))
    kcat_produce(stack.kafka_bootstrap, name, before, "none")
    kcat_produce(stack.kafka_bootstrap, name, compressed, codec)
    kcat_produce(stack.kafka_bootstrap, name, after, "gzip")
    blocker = _codec_blocker(tmp_path / "blocked", CODEC_MODULES[codec])
    port = free_port()
    env = _env(stack, name, redis_prefix, CONSUMER_METRICS_PORT=str(port), PYTHONPATH=str(blocker))

    watcher = _HealthWatcher(port)
    watcher.start()
    member = ConsumerProcess(env, tmp_path / "blocked.log")
    try:
        code = member.process.wait(timeout=60)
    finally:
        watcher.done.set()
        member.stop()
    log = member.log_text()
    assert code == EXIT_UNDECODABLE, log[-3000:]
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    failures = [line for line in lines if line["event"] == "undecodable fetch; stopping"]
    assert len(failures) == 1, log[-3000:]
    assert (failures[0]["topic"], failures[0]["partition"], failures[0]["offset"]) == (name, 0, len(before))
    assert codec in failures[0]["error"].lower() and "UnsupportedCodecError" in failures[0]["error"]
    assert not any(line["event"] == "poll failed; retrying" for line in lines)
    assert committed_offsets(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name) == {0: len(before)}
    keys = KeySchema(redis_prefix, ZONE)
    assert bucket_state(redis_client, keys) == expected_buckets(before, redis_prefix, ZONE, now, RETENTION_DAYS)
    assert watcher.unhealthy is not None, "/healthz never answered 503 while the consumer was failing"
    assert watcher.unhealthy["error"].startswith(f"cannot decode the records of {name}-0 at offset {len(before)}")
    assert watcher.metrics[f'activeusers_undecodable_fetches_total{{partition="{name}-0"}}'] == 1

    # With the codec's library back, the same group goes on from the bad batch: nothing was lost.
    env.pop("PYTHONPATH")
    _run_until_drained(stack, env, name, tmp_path / "consumer.log")
    assert bucket_state(redis_client, keys) == expected_buckets(
        before + compressed + after, redis_prefix, ZONE, now, RETENTION_DAYS
    )


def test_replay_stops_at_a_batch_it_cannot_decode(stack, topic, redis_prefix, redis_client, tmp_path):
    name = topic(1)
    now = int(time.time() * 1000)
    before, compressed = generate(85, 300, now, days=10), generate(86, 300, now, days=10)
    kcat_produce(stack.kafka_bootstrap, name, before, "none")
    kcat_produce(stack.kafka_bootstrap, name, compressed, "zstd")
    env = _env(stack, name, redis_prefix, PYTHONPATH=str(_codec_blocker(tmp_path / "blocked", "zstandard")))
    result = subprocess.run(
        ConsumerProcess.command("replay"),
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_UNDECODABLE, result.stderr[-3000:]
    assert f"replay stopped: cannot decode the records of {name}-0 at offset {len(before)}" in result.stderr
    assert "zstd" in result.stderr.splitlines()[-1]
    keys = KeySchema(redis_prefix, ZONE)
    assert bucket_state(redis_client, keys) == expected_buckets(before, redis_prefix, ZONE, now, RETENTION_DAYS)
