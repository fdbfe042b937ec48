"""Batches, heartbeats, day-set reads and the clients, against fakeredis (and a closed port for failures); the
index (numbering, bitmaps, counts) needs Lua and is tested against the real Redis (``test_writer_index.py``,
``test_reader_counts.py``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import fakeredis
import orjson
import pytest
import redis
import redis.asyncio as aioredis
import redis.client
from buckets import members
from redis.backoff import NoBackoff
from redis.retry import Retry

from activeusers import store
from activeusers.days import days_between
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.settings import Secret, Settings
from activeusers.store import (
    READ_CHUNK,
    ActivityReader,
    ActivityWriter,
    Buckets,
    async_redis_client,
    check_redis,
    redis_client,
    redis_config_problem,
    redis_security,
)

SETTINGS = Settings(activity_timezone="America/New_York", retention_days=400, hour_retention_days=90)
KEYS = KeySchema("t:", SETTINGS.activity_timezone)
# Days far enough ahead that their EXPIREAT lies in the future of the real clock fakeredis uses.
DST_DAY = date(2031, 3, 9)  # spring forward in New York
DAY = date(2031, 6, 1)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def client(server: fakeredis.FakeServer) -> Iterator[fakeredis.FakeRedis]:
    fake = fakeredis.FakeRedis(server=server, decode_responses=True)
    yield fake
    fake.close()


@pytest.fixture
def writer(client: fakeredis.FakeRedis) -> ActivityWriter:
    return ActivityWriter(client, KEYS, SETTINGS)


@pytest.fixture
async def reader(server: fakeredis.FakeServer) -> Any:
    fake = fakeredis.FakeAsyncRedis(server=server)  # bytes replies: the reader decodes them
    yield ActivityReader(fake, KEYS)
    await fake.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


NO_RETRY = Retry(NoBackoff(), 0)


# ----------------------------------------------------------------------------------------------------------- Buckets


def test_buckets_start_empty() -> None:
    buckets = Buckets()
    assert not buckets
    assert members(buckets) == 0
    assert buckets.newest_event_ms == -1


def test_buckets_accumulate_distinct_users() -> None:
    buckets = Buckets()
    buckets.add_active(DAY, 9, "alice", 1_000)
    buckets.add_active(DAY, 9, "alice", 3_000)  # same user, same hour: nothing new
    buckets.add_active(DAY, 10, "alice", 2_000)  # same day, another hour
    buckets.add_active(DAY, 9, "bob", 500)
    buckets.add_active(DAY + timedelta(days=1), 0, "bob", 4_000)
    assert buckets
    assert dict(buckets.days) == {DAY: {"alice", "bob"}, DAY + timedelta(days=1): {"bob"}}
    assert dict(buckets.hours) == {
        (DAY, 9): {"alice", "bob"},
        (DAY, 10): {"alice"},
        (DAY + timedelta(days=1), 0): {"bob"},
    }
    assert buckets.newest_event_ms == 4_000
    assert members(buckets) == 3 + 4
    assert not buckets.created


def test_buckets_created_only() -> None:
    buckets = Buckets()
    buckets.add_created(DAY, "carol", 7)
    buckets.add_created(DAY, "carol", 5)
    assert buckets  # a batch of only user.created events still has something to write
    assert dict(buckets.created) == {DAY: {"carol"}}
    assert not buckets.days
    assert members(buckets) == 1
    assert buckets.newest_event_ms == 7


def test_buckets_members_counts_every_addition() -> None:
    buckets = Buckets()
    for i in range(5):
        buckets.add_active(DAY, i, f"u{i}", i)
    buckets.add_created(DAY, "u0", 0)
    assert members(buckets) == 5 + 5 + 1


def test_buckets_do_not_share_state() -> None:
    first, second = Buckets(), Buckets()
    first.add_active(DAY, 1, "u", 1)
    assert not second
    assert second.days == {}


# ---------------------------------------------------------------------------------------------------- ActivityWriter


def test_heartbeat_and_forget(writer: ActivityWriter, client: fakeredis.FakeRedis) -> None:
    now = 1_700_000_000_000
    ttl = int(SETTINGS.consumer_stale_s * 1000)
    writer.heartbeat("member-1", {"ts": now, "assigned": ["user-activity-0"]}, now)
    writer.heartbeat("member-2", {"ts": 1}, now)
    writer.heartbeat("member-1", {"ts": 2}, now + 5)  # replaces
    assert orjson.loads(client.get("t:heartbeat:member-1")) == {"ts": 2}
    assert orjson.loads(client.get("t:heartbeat:member-2")) == {"ts": 1}
    assert 0 < client.pttl("t:heartbeat:member-1") <= ttl  # Redis expires it by itself
    assert client.zrange("t:heartbeats", 0, -1, withscores=True) == [
        ("member-2", now + ttl),
        ("member-1", now + 5 + ttl),
    ]
    writer.forget("member-1")
    assert client.get("t:heartbeat:member-1") is None
    assert client.zrange("t:heartbeats", 0, -1) == ["member-2"]
    writer.forget("never-seen")
    assert client.zrange("t:heartbeats", 0, -1) == ["member-2"]


def test_a_heartbeat_prunes_index_entries_one_time_to_live_after_they_expired(
    writer: ActivityWriter, client: fakeredis.FakeRedis
) -> None:
    ttl = int(SETTINGS.consumer_stale_s * 1000)
    now = 1_700_000_000_000
    writer.heartbeat("dead-long-ago", {}, now - 2 * ttl - 1)  # expired at now - ttl - 1: pruned
    writer.heartbeat("dead-recently", {}, now - 2 * ttl + 1)  # expired at now - ttl + 1: kept a while longer
    writer.heartbeat("alive", {}, now)
    assert client.zrange("t:heartbeats", 0, -1) == ["dead-recently", "alive"]


def test_writer_errors_become_store_unavailable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.2, retry=NO_RETRY)
    writer = ActivityWriter(dead, KEYS, SETTINGS)
    buckets = Buckets()
    buckets.add_active(DAY, 0, "u", 1)
    with pytest.raises(StoreUnavailable, match="Redis write failed") as caught:
        writer.write(buckets)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(StoreUnavailable, match="heartbeat failed"):
        writer.heartbeat("m", {"ts": 1}, 1)
    with pytest.raises(StoreUnavailable, match="removal failed"):
        writer.forget("m")
    dead.close()


def test_heartbeat_errors_become_store_unavailable(server: fakeredis.FakeServer, writer: ActivityWriter) -> None:
    server.connected = False
    with pytest.raises(StoreUnavailable):
        writer.heartbeat("m", {}, 1)


# ---------------------------------------------------------------------------------------------------- ActivityReader


async def test_active_users_across_many_chunks(reader: ActivityReader, client: fakeredis.FakeRedis) -> None:
    days = days_between(DAY, DAY + timedelta(days=READ_CHUNK * 2 + 5))
    for i, day in enumerate(days):
        if i % 3:
            continue  # every third day has data, the others have no key at all
        client.sadd(KEYS.day(day), *(f"u{user}" for user in range(i % 7 + 1)))

    found = await reader.active_users(days)
    assert list(found) == days
    for i, day in enumerate(days):
        want = {f"u{u}" for u in range(i % 7 + 1)} if i % 3 == 0 else set()
        assert found[day] == want, day
    assert all(isinstance(m, str) for users in found.values() for m in users)


async def test_active_users_chunks_its_pipelines(reader: ActivityReader, monkeypatch: pytest.MonkeyPatch) -> None:
    client = reader._client
    opened: list[int] = []
    original = client.pipeline

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(client, "pipeline", counting)
    days = days_between(DAY, DAY + timedelta(days=READ_CHUNK * 2))  # 2 * READ_CHUNK + 1 days
    assert await reader.active_users(days) == {d: set() for d in days}
    assert len(opened) == 3


async def test_active_users_of_no_days(reader: ActivityReader) -> None:
    assert await reader.active_users([]) == {}


async def test_heartbeats(writer: ActivityWriter, reader: ActivityReader, client: fakeredis.FakeRedis) -> None:
    assert await reader.heartbeats() == {}
    writer.heartbeat("member-1", {"ts": 5, "assigned": ["t-0", "t-1"], "lastEventMs": None}, 5)
    writer.heartbeat("mémbre-2", {"ts": 6}, 6)
    writer.heartbeat("expired", {"ts": 7}, 7)
    client.delete(KEYS.heartbeat("expired"))  # as Redis does when its time to live ends
    writer.heartbeat("foreign", {}, 8)
    client.set(KEYS.heartbeat("foreign"), "not json")
    assert await reader.heartbeats() == {
        "member-1": {"ts": 5, "assigned": ["t-0", "t-1"], "lastEventMs": None},
        "mémbre-2": {"ts": 6},
    }


async def test_heartbeats_reads_the_freshest_up_to_its_bound(
    writer: ActivityWriter, reader: ActivityReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "HEARTBEATS_READ", 2)
    for n in range(4):
        writer.heartbeat(f"m{n}", {"n": n}, 1_000 + n)
    assert await reader.heartbeats() == {"m3": {"n": 3}, "m2": {"n": 2}}


async def test_ping(reader: ActivityReader, server: fakeredis.FakeServer) -> None:
    await reader.ping()
    server.connected = False
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await reader.ping()


async def test_reader_errors_become_store_unavailable(reader: ActivityReader, server: fakeredis.FakeServer) -> None:
    server.connected = False
    with pytest.raises(StoreUnavailable, match="read failed"):
        await reader.active_users([DAY])
    with pytest.raises(StoreUnavailable, match="read failed"):
        await reader.heartbeats()


async def test_reader_against_a_closed_port() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.2, retry=NO_RETRY)
    reader = ActivityReader(dead, KEYS)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await reader.ping()
        assert isinstance(caught.value.__cause__, redis.ConnectionError | OSError)
        with pytest.raises(StoreUnavailable):
            await reader.active_users([DAY])
        with pytest.raises(StoreUnavailable):
            await reader.heartbeats()
    finally:
        await dead.aclose()


async def test_reader_maps_server_errors(client: fakeredis.FakeRedis, reader: ActivityReader) -> None:
    client.set(KEYS.day(DAY), "a string, not a set")
    with pytest.raises(StoreUnavailable):
        await reader.active_users([DAY])


# ---------------------------------------------------------------------------------------------------------- clients


def test_redis_client_uses_the_settings_timeouts() -> None:
    settings = Settings(redis_url="redis://cache.invalid:6390/3", redis_timeout_s=0.75)
    client = redis_client(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.invalid", 6390, 3)
    assert kwargs["socket_timeout"] == 0.75
    assert kwargs["socket_connect_timeout"] == 0.75
    client.close()


async def test_async_redis_client_uses_the_settings_timeouts() -> None:
    settings = Settings(redis_url="redis://cache.invalid:6390/3", redis_timeout_s=0.75)
    client = async_redis_client(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.invalid", 6390, 3)
    assert kwargs["socket_timeout"] == 0.75
    assert kwargs["socket_connect_timeout"] == 0.75
    await client.aclose()


def test_clients_get_the_acl_user_password_and_tls_files(tmp_path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("x")
    settings = Settings(
        redis_url="rediss://cache.invalid:6380/0",
        redis_username="app",
        redis_password=Secret("pw"),
        redis_ssl_ca_file=str(files["ca"]),
        redis_ssl_cert_file=str(files["cert"]),
        redis_ssl_key_file=str(files["key"]),
        redis_ssl_check_hostname=False,
    )
    assert settings.problems() == []
    for kwargs in (redis_client(settings).connection_pool.connection_kwargs,
                   async_redis_client(settings).connection_pool.connection_kwargs):  # fmt: skip
        assert (kwargs["username"], kwargs["password"]) == ("app", "pw")
        assert kwargs["ssl_ca_certs"] == str(files["ca"]) and kwargs["ssl_cert_reqs"] == "required"
        assert (kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (str(files["cert"]), str(files["key"]))
        assert kwargs["ssl_check_hostname"] is False
    assert redis_security(Settings()) == {}  # plaintext, default user: nothing added


@pytest.mark.parametrize(
    ("error", "setting"),
    [
        (redis.AuthenticationError("invalid username-password pair"), "REDIS_USERNAME/REDIS_PASSWORD"),
        (redis.ResponseError("NOAUTH Authentication required."), "REDIS_PASSWORD"),
        (redis.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate"), "REDIS_SSL_CA_FILE"),
        (redis.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] Hostname mismatch"), "REDIS_SSL_CHECK_HOSTNAME"),
        (redis.ConnectionError("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED]"), "REDIS_SSL_CERT_FILE/REDIS_SSL_KEY_FILE"),
    ],
)  # fmt: skip
def test_refusals_name_the_setting(error: Exception, setting: str) -> None:
    settings = Settings(redis_url="rediss://:secret-pw@cache.invalid:6380/0")
    problem = redis_config_problem(settings, error)
    assert problem is not None and problem.startswith(setting + ":")
    assert "secret-pw" not in problem and "rediss://***@cache.invalid:6380/0" in problem


def test_plaintext_on_a_tls_port_and_a_server_that_is_down() -> None:
    plain = Settings(redis_url="redis://cache.invalid:6380/0")
    reset = redis.ConnectionError("Error while reading from cache.invalid:6380 : (104, 'Connection reset by peer')")
    assert (redis_config_problem(plain, reset) or "").startswith("REDIS_URL:")
    refused = redis.ConnectionError("Error 111 connecting to cache.invalid:6380. Connection refused.")
    assert redis_config_problem(plain, refused) is None  # merely down: the caller's retries wait for it
    check_redis(Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_timeout_s=0.2))  # no raise
