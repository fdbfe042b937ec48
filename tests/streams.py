"""Test helpers shared by integration tests: event streams, an independent oracle, consumer processes.

The oracle computes the expected Redis content straight from the events with ``datetime`` (not with the
service's day math), so a bucketing bug cannot hide in both sides.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from activeusers.keys import KeySchema, bucket_of

REPO_ROOT = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Sent:
    """One record as produced: key, value bytes, and the event it encodes (None for malformed records)."""

    key: bytes | None
    value: bytes | None
    event: dict[str, Any] | None


def iso(ms: int) -> str:
    """JavaScript-style ISO form of an instant."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def generate(
    seed: int,
    count: int,
    now_ms: int,
    users: int = 300,
    days: int = 40,
    malformed_share: float = 0.0,
    avoid_days_ago: tuple[float, float] | None = None,
    also_avoid: tuple[tuple[float, float], ...] = (),
) -> list[Sent]:
    """A reproducible stream: logins/activity over ``days`` before ``now_ms``, some creations, anonymous users,
    unknown types, epoch-ms and offset timestamps, and optionally malformed records.

    ``avoid_days_ago`` keeps timestamps out of a band (in days before ``now_ms``), e.g. around the retention
    cut-off, where the consumer's clock and the oracle's could disagree by the seconds between them;
    ``also_avoid`` adds more such bands (another retention's cut-off)."""
    bands = ((avoid_days_ago,) if avoid_days_ago else ()) + also_avoid
    rng = random.Random(seed)
    sent: list[Sent] = []
    for i in range(count):
        if malformed_share and rng.random() < malformed_share:
            value = MALFORMED_SAMPLES[i % len(MALFORMED_SAMPLES)][1]
            sent.append(Sent(f"bad{i}".encode(), value, None))
            continue
        user = f"user{rng.randrange(users):05d}"
        ts = now_ms - rng.randrange(days * DAY_MS)
        while any(low * DAY_MS <= now_ms - ts <= high * DAY_MS for low, high in bands):
            ts = now_ms - rng.randrange(days * DAY_MS)
        kind = rng.choices(["login", "activity", "logout", "user.created", "message.sent"], [30, 50, 8, 5, 7])[0]
        event: dict[str, Any] = {"type": kind, "userId": user}
        form = rng.random()
        if form < 0.6:
            event["ts"] = iso(ts)
        elif form < 0.8:
            event["ts"] = ts
        else:
            moment = datetime.fromtimestamp(ts / 1000, tz=ZoneInfo("Asia/Kolkata"))
            event["ts"] = moment.isoformat(timespec="milliseconds")
        if rng.random() < 0.05:
            event["roles"] = ["anonymous"]
        elif rng.random() < 0.2:
            event["roles"] = ["user", "admin"] if rng.random() < 0.5 else ["bot"]
        sent.append(Sent(user.encode(), orjson.dumps(event), event))
    return sent


MALFORMED_SAMPLES: list[tuple[str, bytes | None]] = [
    ("empty", None),
    ("oversized", b'{"type":"login","userId":"u","ts":0,"pad":"' + b"x" * 20000 + b'"}'),
    ("not_json", b"{not json"),
    ("not_json", b"\xff\xfe\x00garbage"),
    ("not_object", b"[1,2,3]"),
    ("missing_type", b'{"userId":"u1","ts":"2024-01-01T00:00:00.000Z"}'),
    ("invalid_type", b'{"type":7,"userId":"u1","ts":"2024-01-01T00:00:00.000Z"}'),
    ("missing_user_id", b'{"type":"login","ts":"2024-01-01T00:00:00.000Z"}'),
    ("invalid_user_id", b'{"type":"login","userId":"","ts":"2024-01-01T00:00:00.000Z"}'),
    ("missing_ts", b'{"type":"login","userId":"u1"}'),
    ("invalid_ts", b'{"type":"login","userId":"u1","ts":"yesterday"}'),
    ("invalid_roles", b'{"type":"login","userId":"u1","ts":"2024-01-01T00:00:00.000Z","roles":"admin"}'),
    ("future_ts", b'{"type":"login","userId":"u1","ts":"2999-01-01T00:00:00.000Z"}'),
]


def _ts_ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return round(datetime.fromisoformat(value).timestamp() * 1000)


@dataclass
class Activity:
    """The expected content of the buckets, by local day and (day, hour): what the consumer must have stored."""

    days: dict[date, set[str]] = field(default_factory=lambda: defaultdict(set))
    hours: dict[tuple[date, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    created: dict[date, set[str]] = field(default_factory=lambda: defaultdict(set))


def activity(
    events: Iterable[dict[str, Any] | None],
    zone: ZoneInfo,
    now_ms: int,
    retention_days: int,
    hour_retention_days: int | None = None,
) -> Activity:
    """Expected buckets for the events (anonymous, unknown and expired ones left out; hour buckets also left out
    once ``hour_retention_days`` after their day, when given)."""
    expected = Activity()
    for event in events:
        if event is None or event["type"] not in {"login", "activity", "logout", "user.created"}:
            continue
        if event.get("roles") == ["anonymous"]:
            continue
        local = datetime.fromtimestamp(_ts_ms(event["ts"]) / 1000, tz=zone)
        day = local.date()
        following = day + timedelta(days=1)
        day_end = datetime(following.year, following.month, following.day, tzinfo=zone).timestamp()
        if (day_end + retention_days * 86_400) * 1000 <= now_ms:
            continue
        if event["type"] == "user.created":
            expected.created[day].add(event["userId"])
            continue
        expected.days[day].add(event["userId"])
        if hour_retention_days is None or (day_end + hour_retention_days * 86_400) * 1000 > now_ms:
            expected.hours[(day, local.hour)].add(event["userId"])
    return expected


def oracle(
    events: Iterable[dict[str, Any] | None],
    keys: KeySchema,
    zone: ZoneInfo,
    now_ms: int,
    retention_days: int,
) -> dict[str, set[str]]:
    """Expected index contents (as :func:`bucket_state` names them) for the events (anonymous, unknown and
    expired ones left out)."""
    found = activity(events, zone, now_ms, retention_days)
    return {
        **{index_label("day", day.isoformat()): users for day, users in found.days.items()},
        **{index_label("hour", f"{day.isoformat()}T{hour:02d}"): users for (day, hour), users in found.hours.items()},
        **{index_label("new", day.isoformat()): users for day, users in found.created.items()},
    }


def index_label(kind: str, when: str) -> str:
    """How :func:`bucket_state` names the users of one of the index's days, hours or creation days."""
    return f"index:{kind}:{when}"


def bucket_state(client: Any, keys: KeySchema) -> dict[str, set[str]]:
    """The index decoded back into user ids: every bitmap of a day, hour or creation day, its bits mapped through
    its bucket's names list and the buckets unioned (labelled by :func:`index_label`). Asserts that no day set is
    left, that every bucket's numbering is dense, that its names list is exactly the ids hash reversed (number n
    -> the id numbered n), that every bit set names a numbered user, and that every counter of the counts keys
    equals the bits of its bitmap. First days are left out (``tests/cohorts.py`` reads them)."""
    found: dict[str, set[str]] = {}
    assert not list(client.scan_iter(match=keys.old_day_pattern(), count=1000)), "a day set was written"
    counted: dict[tuple[str, str], int] = {}
    bitmaps: dict[tuple[str, str], int] = {}
    users: list[dict[int, str]] = []
    for bucket in range(keys.buckets):
        numbers = {int(n): _text(u) for u, n in client.hgetall(keys.ids(bucket)).items()}
        assert sorted(numbers) == list(range(len(numbers))), f"bucket {bucket}: numbers not dense"
        assert all(bucket_of(u, keys.buckets) == bucket for u in numbers.values()), f"bucket {bucket}: foreign id"
        names = [_text(u) for u in client.lrange(keys.names(bucket), 0, -1)]
        assert names == [numbers[n] for n in range(len(numbers))], f"bucket {bucket}: names list is not the hash"
        users.append(dict(enumerate(names)))
    for key in client.scan_iter(match=keys.pattern(), count=1000):
        name = _text(key)
        tag = keys.prefix + "{"
        if not name.startswith(tag) or name.endswith(("}:ids", "}:names", "}:namesmade", "}:unlisted")):
            continue
        if name.startswith(("first:", "firstday:"), name.index("}") + 2):
            continue
        bucket = int(name[len(tag) : name.index("}")].split(".")[1])
        kind, _, when = name[name.index("}") + 2 :].partition(":")
        when = when.removeprefix(keys.zone_name + ":")
        bits: bytes = client.execute_command("GET", name, NEVER_DECODE=True)
        if kind == "counts":
            counters = struct.unpack(">26I", bits.ljust(104, b"\0"))
            slots = [("hour", f"{when}T{hour:02d}") for hour in range(24)] + [("day", when), ("new", when)]
            for slot, count in zip(slots, counters, strict=True):
                counted[slot] = counted.get(slot, 0) + count
            continue
        bitmaps[(kind, when)] = bitmaps.get((kind, when), 0) + sum(bin(byte).count("1") for byte in bits)
        decoded = found.setdefault(index_label(kind, when), set())
        for position, byte in enumerate(bits):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    number = position * 8 + bit
                    assert number in users[bucket], f"{name}: bit {number} names no user"
                    decoded.add(users[bucket][number])
    assert {slot: n for slot, n in counted.items() if n} == {slot: n for slot, n in bitmaps.items() if n}, "counters"
    return {label: ids for label, ids in found.items() if ids}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def produce(bootstrap: str, topic: str, records: Iterable[Sent], security: Mapping[str, Any] | None = None) -> int:
    """Send every record and wait until Kafka acknowledged all of them; returns how many.

    ``security`` (here and below): kafka-python security arguments, e.g. ``consumer.kafka.security_config(...)``.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        **(security or {}), bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2_000_000
    )
    count = 0
    try:
        futures = [producer.send(topic, key=r.key, value=r.value) for r in records]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
            count += 1
    finally:
        producer.close(timeout=10)
    return count


class Feeder(threading.Thread):
    """Produces a stream in small chunks at a steady pace; a chunk is re-sent until Kafka acknowledges all of it
    (duplicates are harmless: they are what an at-least-once producer does). ``stop`` ends it after the chunk
    being sent; ``sent[:done]`` is what it produced."""

    def __init__(self, bootstrap: str, topic: str, sent: list[Sent], chunk: int = 200, pause_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.sent = bootstrap, topic, sent
        self.chunk, self.pause_s = chunk, pause_s
        self.done = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            for start in range(0, len(self.sent), self.chunk):
                if self._halt.is_set():
                    return
                deadline = time.monotonic() + 120
                while True:
                    try:
                        produce(self.bootstrap, self.topic, self.sent[start : start + self.chunk])
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
                self.done = min(len(self.sent), start + self.chunk)
                time.sleep(self.pause_s)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        """Produce no further chunk, and wait for the one being sent."""
        self._halt.set()
        self.finish()

    def finish(self, timeout_s: float = 180) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "the feeder did not finish"
        assert self.error is None, repr(self.error)


def require_tool(name: str) -> str:
    """The path of a command-line tool; a missing one fails the test under CI and skips it otherwise."""
    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install -y {name}; .ci/run installs it)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def kcat_produce(
    bootstrap: str, topic: str, records: Iterable[Sent], codec: str, headers: Mapping[str, str] | None = None
) -> None:
    """Publish with kcat (librdkafka, not kafka-python): one line per record, ``key:value``, batched for 100 ms
    so that ``codec`` (``none``, ``gzip``, ``snappy``, ``lz4``, ``zstd``) really compresses; an empty value is
    sent as null (a tombstone)."""
    lines = []
    for record in records:
        key, value = record.key or b"", record.value or b""
        assert b":" not in key and b"\n" not in key + value, "kcat splits records at newlines, keys at ':'"
        lines.append(key + b":" + value + b"\n")
    command = [require_tool("kcat"), "-P", "-b", bootstrap, "-t", topic, "-z", codec, "-K:", "-Z"]
    command += ["-X", "linger.ms=100", "-X", "acks=all"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}={value}"]
    result = subprocess.run(command, input=b"".join(lines), capture_output=True, timeout=120, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr.decode(errors="replace")


def consumer_env(stack: Any, topic: str, prefix: str, group: str, **extra: str) -> dict[str, str]:
    """The environment of a consumer process for one test's topic, group and key prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_", "ACTIVITY_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap,
        REDIS_URL=stack.redis_url,
        KAFKA_TOPIC=topic,
        KAFKA_DLQ_TOPIC=topic + ".dlq",
        KAFKA_GROUP_ID=group,
        REDIS_KEY_PREFIX=prefix,
        CONSUMER_METRICS_PORT="0",
        CONSUMER_HEARTBEAT="1s",
        CONSUMER_STALE="10s",
        BATCH_SIZE="500",
    )
    env.update(extra)
    return env


class ConsumerProcess:
    """``active-users consume`` as a real child process, with its log captured to a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            self.command("consume"),
            env=dict(env),
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @staticmethod
    def command(subcommand: str) -> list[str]:
        """The argv that runs an ``active-users`` subcommand with this interpreter."""
        return [sys.executable, "-m", "activeusers.cli", subcommand]

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        self._log.close()
        return code

    def log_text(self) -> str:
        """What the process logged so far."""
        return self.log_path.read_text(errors="replace")

    def owned(self) -> set[str]:
        """The partitions (``topic-N``) this member holds now, replayed from its assigned/revoked log lines."""
        held: set[str] = set()
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            entry = orjson.loads(line)
            if entry.get("event") == "partitions assigned":
                held |= set(entry["partitions"])
            elif entry.get("event") in ("partitions revoked", "partitions lost"):
                held -= set(entry["partitions"])
        return held


class SlowRelay:
    """A TCP relay on 127.0.0.1 to a real server (a Redis URL's): what a client sends reaches the server
    ``delay_s`` late, and nothing passes while paused. A slow network path on demand, the server untouched."""

    def __init__(self, url: str, delay_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._delay_s = delay_s
        self._server = socket.create_server(("127.0.0.1", 0))
        port = self._server.getsockname()[1]
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def pause(self) -> None:
        """Hold everything not yet passed on (what a client sent less than ``delay_s`` ago, too)."""
        self._open.clear()

    def resume(self) -> None:
        """Pass on what was held, and everything after it."""
        self._open.set()

    def close(self) -> None:
        """Stop accepting and cut every relayed connection."""
        self._open.set()
        self._server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, self._delay_s), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, 0.0), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, delay_s: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay_s)
                self._open.wait()
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)


def committed_offsets(
    bootstrap: str, group: str, topic: str, security: Mapping[str, Any] | None = None
) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (missing partitions have none)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**(security or {}), bootstrap_servers=bootstrap, client_id="tests-offsets")
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def end_offsets(bootstrap: str, topic: str, security: Mapping[str, Any] | None = None) -> dict[int, int]:
    """The end offset of every partition of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**(security or {}), bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def wait_drained(
    bootstrap: str, group: str, topic: str, timeout_s: float = 90, security: Mapping[str, Any] | None = None
) -> None:
    """Wait until the group has committed the end offset of every partition of ``topic``."""
    from kafka.errors import CoordinatorNotAvailableError

    ends = end_offsets(bootstrap, topic, security)
    deadline = time.monotonic() + timeout_s
    committed: dict[int, int] = {}
    while True:
        # A broker that has just started may still be loading its offsets topic.
        with contextlib.suppress(CoordinatorNotAvailableError):
            committed = committed_offsets(bootstrap, group, topic, security)
        if all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} did not drain {topic}: committed {committed}, end {ends}")
        time.sleep(0.5)


def read_topic(bootstrap: str, name: str, expected: int, timeout_s: float = 30) -> list[Any]:
    """Every record of ``name`` from the beginning, waiting until ``expected`` arrived (or the timeout)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(name, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def expected_buckets(
    sent: Iterable[Sent], prefix: str, zone: str, now_ms: int, retention_days: int
) -> dict[str, set[str]]:
    """The oracle for the records as sent, under ``prefix`` in ``zone``."""
    found = (s.event for s in sent)
    return oracle(found, KeySchema(prefix, zone), ZoneInfo(zone), now_ms, retention_days)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 15) -> tuple[int, bytes]:
    """Status and body of a GET (error statuses included)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_api(env: Mapping[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``active-users serve`` as a child process on a free loopback port; returns it and its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "activeusers.cli", "serve"],
        env={**env, "API_HOST": "127.0.0.1", "API_PORT": str(port)},
        cwd=REPO_ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            return http_get(base + "/healthz")[0] == 200
        except OSError:
            return False

    wait_until(healthy, 30, "the API did not start")
    return process, base


def in_ci() -> bool:
    """Whether env ``CI`` asks for hard failures instead of skips (a missing tool then fails the test)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def cli_token(env: dict[str, str], user_id: str) -> dict[str, str]:
    """Auth headers of a new token made by our CLI, as an operator would."""
    token = subprocess.run(
        [
            sys.executable,
            "-m",
            "activeusers.cli",
            "token",
            "create",
            "--user-id",
            user_id,
            "--permission",
            "view-engagement-dashboard",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"X-User-Id": user_id, "X-Auth-Token": token}
