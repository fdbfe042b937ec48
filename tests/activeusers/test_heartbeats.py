"""Consumer liveness (:mod:`activeusers.heartbeats`): :class:`Heartbeats` publishes and withdraws the records,
:func:`live_heartbeats` (and :meth:`ActivityReader.heartbeats`, which delegates to it) reads the live ones; against
fakeredis (pure logic: keys, scores, pruning), the real Redis (Redis itself expires a record) and a closed port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from activeusers import heartbeats as heartbeats_module
from activeusers.errors import StoreUnavailable
from activeusers.heartbeats import Heartbeats, live_heartbeats
from activeusers.keys import KeySchema
from activeusers.reader import ActivityReader
from activeusers.settings import Settings

SETTINGS = Settings(consumer_heartbeat_s=5.0, consumer_stale_s=60.0)
TTL_MS = 60_000
KEYS = KeySchema("t:", "UTC")
NOW = 1_700_000_000_000


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def client(server: fakeredis.FakeServer) -> Iterator[fakeredis.FakeRedis]:
    fake = fakeredis.FakeRedis(server=server, decode_responses=True)
    yield fake
    fake.close()


@pytest.fixture
def beats(client: fakeredis.FakeRedis) -> Heartbeats:
    return Heartbeats(client, KEYS, SETTINGS)


@pytest.fixture
async def async_client(server: fakeredis.FakeServer) -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    fake = fakeredis.FakeAsyncRedis(server=server)  # bytes replies: the readers decode them
    yield fake
    await fake.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


NO_RETRY = Retry(NoBackoff(), 0)


def test_beat_and_forget(beats: Heartbeats, client: fakeredis.FakeRedis) -> None:
    beats.beat("member-1", {"ts": NOW, "assigned": ["user-activity-0"]}, NOW)
    beats.beat("member-2", {"ts": 1}, NOW)
    beats.beat("member-1", {"ts": 2}, NOW + 5)  # replaces
    assert orjson.loads(client.get("t:heartbeat:member-1") or "") == {"ts": 2}
    assert orjson.loads(client.get("t:heartbeat:member-2") or "") == {"ts": 1}
    assert 0 < client.pttl("t:heartbeat:member-1") <= TTL_MS  # Redis expires it by itself
    assert client.zrange("t:heartbeats", 0, -1, withscores=True) == [
        ("member-2", NOW + TTL_MS),
        ("member-1", NOW + 5 + TTL_MS),
    ]
    beats.forget("member-1")
    assert client.get("t:heartbeat:member-1") is None
    assert client.zrange("t:heartbeats", 0, -1) == ["member-2"]
    beats.forget("never-seen")
    assert client.zrange("t:heartbeats", 0, -1) == ["member-2"]


def test_a_beat_prunes_index_entries_one_time_to_live_after_they_expired(
    beats: Heartbeats, client: fakeredis.FakeRedis
) -> None:
    beats.beat("dead-long-ago", {}, NOW - 2 * TTL_MS - 1)  # expired at NOW - TTL - 1: pruned
    beats.beat("dead-recently", {}, NOW - 2 * TTL_MS + 1)  # expired at NOW - TTL + 1: kept a while longer
    beats.beat("alive", {}, NOW)
    assert client.zrange("t:heartbeats", 0, -1) == ["dead-recently", "alive"]


@pytest.mark.parametrize(("stale_s", "ttl_ms"), [(60.0, 60_000), (1.5, 1_500), (0.0001, 1)])
def test_the_time_to_live_is_consumer_stale(client: fakeredis.FakeRedis, stale_s: float, ttl_ms: int) -> None:
    Heartbeats(client, KEYS, Settings(consumer_heartbeat_s=0.00001, consumer_stale_s=stale_s)).beat("m", {}, NOW)
    assert client.zscore("t:heartbeats", "m") == NOW + ttl_ms  # at least 1 ms: PX 0 would be refused
    assert 0 < client.pttl("t:heartbeat:m") <= ttl_ms


def test_a_dead_server_becomes_store_unavailable(beats: Heartbeats, server: fakeredis.FakeServer) -> None:
    server.connected = False
    with pytest.raises(StoreUnavailable, match="heartbeat failed"):
        beats.beat("m", {}, 1)
    with pytest.raises(StoreUnavailable, match="removal failed"):
        beats.forget("m")


def test_a_closed_port_becomes_store_unavailable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.2, retry=NO_RETRY)
    beats = Heartbeats(dead, KEYS, SETTINGS)
    with pytest.raises(StoreUnavailable, match="heartbeat failed") as caught:
        beats.beat("m", {"ts": 1}, 1)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(StoreUnavailable, match="removal failed"):
        beats.forget("m")
    dead.close()


async def test_live_heartbeats(beats: Heartbeats, client: fakeredis.FakeRedis, async_client: Any) -> None:
    assert await live_heartbeats(async_client, KEYS) == {}
    beats.beat("member-1", {"ts": 5, "assigned": ["t-0", "t-1"], "lastEventMs": None}, 5)
    beats.beat("mémbre-2", {"ts": 6}, 6)
    beats.beat("expired", {"ts": 7}, 7)
    client.delete(KEYS.heartbeat("expired"))  # as Redis does when its time to live ends
    beats.beat("foreign", {}, 8)
    client.set(KEYS.heartbeat("foreign"), "not json")
    beats.beat("a-list", {}, 9)
    client.set(KEYS.heartbeat("a-list"), "[1, 2]")  # JSON, but no record
    expected = {
        "member-1": {"ts": 5, "assigned": ["t-0", "t-1"], "lastEventMs": None},
        "mémbre-2": {"ts": 6},
    }
    assert await live_heartbeats(async_client, KEYS) == expected
    assert await ActivityReader(async_client, KEYS).heartbeats() == expected  # the reader delegates


async def test_live_heartbeats_reads_the_freshest_up_to_its_bound(
    beats: Heartbeats, async_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeats_module, "HEARTBEATS_READ", 2)
    for n in range(4):
        beats.beat(f"m{n}", {"n": n}, 1_000 + n)
    assert await live_heartbeats(async_client, KEYS) == {"m3": {"n": 3}, "m2": {"n": 2}}


async def test_reading_a_dead_server_becomes_store_unavailable(async_client: Any, server: fakeredis.FakeServer) -> None:
    server.connected = False
    with pytest.raises(StoreUnavailable, match="read failed"):
        await live_heartbeats(async_client, KEYS)
    with pytest.raises(StoreUnavailable, match="read failed"):
        await ActivityReader(async_client, KEYS).heartbeats()


async def test_reading_a_closed_port_becomes_store_unavailable() -> None:
    dead = aioredis.Redis(
        host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.2, retry=AsyncRetry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await live_heartbeats(dead, KEYS)
        assert isinstance(caught.value.__cause__, redis.ConnectionError | OSError)
    finally:
        await dead.aclose()


async def test_on_the_real_redis_a_record_expires_by_itself(
    redis_url: str, redis_prefix: str, redis_client: Any
) -> None:
    keys = KeySchema(redis_prefix, "UTC")
    beats = Heartbeats(redis_client, keys, SETTINGS)
    beats.beat("alive", {"ts": 1}, NOW)
    beats.beat("gone", {"ts": 2}, NOW)
    assert 0 < redis_client.pttl(keys.heartbeat("alive")) <= TTL_MS
    assert redis_client.pexpireat(keys.heartbeat("gone"), 1)  # its expiry has passed: Redis removes it at once
    assert not redis_client.exists(keys.heartbeat("gone"))
    reader_client = aioredis.Redis.from_url(redis_url)
    try:
        assert await live_heartbeats(reader_client, keys) == {"alive": {"ts": 1}}
        beats.forget("alive")
        assert await live_heartbeats(reader_client, keys) == {}
    finally:
        await reader_client.aclose()
    assert redis_client.zrange(keys.heartbeats(), 0, -1) == ["gone"]  # its entry awaits pruning
