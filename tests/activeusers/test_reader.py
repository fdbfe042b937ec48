"""The reader (:mod:`activeusers.reader`) against the real Redis and the real Redis Cluster, written by the real
writer: :meth:`ActivityReader.active_ids` (the ids behind the day bitmaps, through the names lists it mirrors and
learns incrementally, in NAMES_CHUNK ranges, and :class:`IndexIncomplete` where a bit has no name), the readiness
check and error mapping; and the pure helpers ``_bits_used`` and ``_selectors`` (Redis' bit order: offset 0 is a
byte's most significant bit). Counts, masks and unions through the API's cache: ``tests/api/test_indexreads.py``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import date, timedelta
from itertools import compress
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from activeusers import reader as reader_module
from activeusers.connections import async_redis_client, redis_client
from activeusers.errors import IndexIncomplete, StoreUnavailable
from activeusers.keys import KeySchema, bucket_of
from activeusers.reader import ActivityReader, _bits_used, _decoded, _selectors
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter

ZONE = "America/New_York"
SETTINGS = Settings(activity_timezone=ZONE, retention_days=400, hour_retention_days=90)
DAY = date(2031, 6, 1)
DAYS = [DAY + timedelta(days=n) for n in range(4)]


def _batch(active: Mapping[date, Sequence[str]]) -> UserSets:
    buckets = UserSets()
    for day, users in active.items():
        for n, user in enumerate(users):
            buckets.add_active(day, n % 24, user, 1)
    return buckets


def in_number_order(writer: ActivityWriter, keys: KeySchema, users: Sequence[str]) -> list[str]:
    """``users`` as ``active_ids`` lists them: bucket by bucket, each in the order of the users' numbers."""
    numbers = writer.numbers(list(users))
    return sorted(set(users), key=lambda user: numbers[user])


class Lranges:
    """The ``LRANGE`` commands the reader packs: (key, start, stop) each."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int, int]] = []
        real = reader_module.pack_command

        def spy(command: tuple[Any, ...]) -> bytes:
            if command[0] == "LRANGE":
                self.calls.append((str(command[1]), int(command[2]), int(command[3])))
            return real(command)

        monkeypatch.setattr(reader_module, "pack_command", spy)


@pytest.fixture
def lranges(monkeypatch: pytest.MonkeyPatch) -> Lranges:
    return Lranges(monkeypatch)


@pytest.fixture
def keys(redis_prefix: str) -> KeySchema:
    return KeySchema(redis_prefix, ZONE, 4)


@pytest.fixture
def writer(redis_url: str, keys: KeySchema) -> Iterator[ActivityWriter]:
    client = redis.Redis.from_url(redis_url)
    yield ActivityWriter(client, keys, SETTINGS)
    client.close()


@pytest.fixture
async def async_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def reader(async_client: aioredis.Redis, keys: KeySchema) -> ActivityReader:
    return ActivityReader(async_client, keys)


# ------------------------------------------------------------------------------------------------------ active_ids


async def test_active_ids_are_the_ids_written(writer: ActivityWriter, reader: ActivityReader, keys: KeySchema) -> None:
    users = [f"user-{n}" for n in range(300)]
    written = {DAYS[0]: users[:200], DAYS[1]: users[150:], DAYS[3]: ["user-7", "é-ü", "a b\nc"]}
    writer.write(_batch(written))
    assert {bucket_of(user, 4) for user in users} == {0, 1, 2, 3}  # several buckets
    found = await reader.active_ids([DAYS[3], DAYS[0], DAYS[2], DAYS[1], DAYS[0]])
    assert found == [
        in_number_order(writer, keys, written[DAYS[3]]),
        in_number_order(writer, keys, written[DAYS[0]]),
        [],  # a day without data
        in_number_order(writer, keys, written[DAYS[1]]),
        in_number_order(writer, keys, written[DAYS[0]]),  # asked twice, answered twice
    ]
    assert all(isinstance(user, str) for ids in found for user in ids)
    assert reader.names_known == sum(
        max((n + 1 for b, n in writer.numbers(users + written[DAYS[3]]).values() if b == bucket), default=0)
        for bucket in range(4)
    )  # the names up to each bucket's highest bit, no more


async def test_active_ids_of_no_days_and_of_days_without_data(reader: ActivityReader, lranges: Lranges) -> None:
    assert await reader.active_ids([]) == []
    assert await reader.active_ids(DAYS) == [[], [], [], []]
    assert reader.names_known == 0
    assert lranges.calls == []  # no bit, no name needed


async def test_active_ids_learn_only_the_numbers_given_since(
    writer: ActivityWriter, reader: ActivityReader, keys: KeySchema, lranges: Lranges, redis_client: Any
) -> None:
    first = [f"first-{n}" for n in range(100)]
    writer.write(_batch({DAY: first}))
    assert sorted((await reader.active_ids([DAY]))[0]) == sorted(first)
    assert reader.names_known == 100  # a day of every numbered user: every name, once
    assert sorted(lranges.calls) == [(keys.names(b), 0, redis_client.llen(keys.names(b)) - 1) for b in range(4)]
    lranges.calls.clear()

    assert sorted((await reader.active_ids([DAY]))[0]) == sorted(first)
    assert lranges.calls == []  # nothing new: no LRANGE at all

    second = [f"second-{n}" for n in range(60)]
    writer.write(_batch({DAY + timedelta(days=1): second}))
    known = {b: redis_client.llen(keys.names(b)) for b in range(4)}  # after the write
    found = await reader.active_ids([DAY, DAY + timedelta(days=1)])
    assert [sorted(ids) for ids in found] == [sorted(first), sorted(second)]
    assert reader.names_known == 160
    starts = {key: start for key, start, _ in lranges.calls}
    assert len(starts) == len(lranges.calls)  # one range per bucket
    for bucket in range(4):  # each bucket fetched from what it knew: its first-day users' count
        before = sum(1 for user in first if bucket_of(user, 4) == bucket)
        assert starts[keys.names(bucket)] == before
        assert (keys.names(bucket), before, known[bucket] - 1) in lranges.calls


async def test_active_ids_fetch_only_up_to_the_highest_bit(
    redis_url: str, redis_prefix: str, reader: ActivityReader, lranges: Lranges
) -> None:
    one = KeySchema(redis_prefix, ZONE, 1)
    writer = ActivityWriter(redis.Redis.from_url(redis_url), one, SETTINGS)
    users = [f"u{n}" for n in range(50)]
    for user in users:
        writer.numbers([user])  # numbers 0-49, in this order
    writer.write(_batch({DAY: [users[3], users[17]]}))
    listing = ActivityReader(reader._client, one)
    assert await listing.active_ids([DAY]) == [[users[3], users[17]]]
    assert lranges.calls == [(one.names(0), 0, 17)]  # not the 32 names after the last bit
    assert listing.names_known == 18


@pytest.mark.parametrize("chunk", [1, 3, 7, 40, 41])
async def test_names_are_fetched_in_chunks(
    redis_url: str,
    redis_prefix: str,
    async_client: aioredis.Redis,
    lranges: Lranges,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
) -> None:
    monkeypatch.setattr(reader_module, "NAMES_CHUNK", chunk)
    one = KeySchema(redis_prefix, ZONE, 1)
    writer = ActivityWriter(redis.Redis.from_url(redis_url), one, SETTINGS)
    users = [f"u{n}" for n in range(41)]
    for user in users:
        writer.numbers([user])  # numbers 0-40, in this order
    writer.write(_batch({DAY: users[:20], DAY + timedelta(days=1): users[::2]}))
    reader = ActivityReader(async_client, one)
    found = await reader.active_ids([DAY, DAY + timedelta(days=1)])
    assert found == [users[:20], users[::2]]
    expected = [(one.names(0), start, min(start + chunk, 41) - 1) for start in range(0, 41, chunk)]
    assert lranges.calls == expected
    assert reader.names_known == 41
    late = [f"late-{n}" for n in range(5)]
    writer.write(_batch({DAY + timedelta(days=2): late}))  # numbers 41-45
    lranges.calls.clear()
    assert await reader.active_ids([DAY + timedelta(days=2)]) == [in_number_order(writer, one, late)]
    assert lranges.calls == [(one.names(0), start, min(start + chunk, 46) - 1) for start in range(41, 46, chunk)]


async def test_concurrent_requests_learn_each_name_once(
    writer: ActivityWriter, reader: ActivityReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "NAMES_CHUNK", 7)
    users = [f"user-{n}" for n in range(120)]
    writer.write(_batch({DAYS[0]: users, DAYS[1]: users[:60], DAYS[2]: users[30:]}))
    found = await asyncio.gather(*(reader.active_ids([DAYS[n % 3]]) for n in range(8)))
    expected = {0: set(users), 1: set(users[:60]), 2: set(users[30:])}
    assert [set(ids[0]) for ids in found] == [expected[n % 3] for n in range(8)]
    assert all(len(ids[0]) == len(set(ids[0])) for ids in found)
    assert reader.names_known == 120  # requests that fetched the same names kept one copy


async def test_a_listing_is_one_round_trip_and_one_more_for_new_names(
    writer: ActivityWriter, reader: ActivityReader, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[list[bytes]] = []
    real = ActivityReader._send

    async def counted(self: ActivityReader, commands: Sequence[Any], scripts: Sequence[str] = ()) -> list[Any]:
        sent.append([command.split(b"\r\n")[2] for _, command in commands])  # each command's name
        return await real(self, commands, scripts)

    monkeypatch.setattr(ActivityReader, "_send", counted)
    users = [f"user-{n}" for n in range(30)]
    writer.write(_batch({DAY: users}))
    assert sorted((await reader.active_ids([DAY]))[0]) == sorted(users)
    assert len(sent) == 2  # the bitmaps (with whatever checks the names held), then the names
    assert sent[0].count(b"MGET") == 4 and b"LRANGE" not in sent[0]  # one MGET per bucket
    assert sent[1] == [b"LRANGE"] * 4
    sent.clear()
    assert sorted((await reader.active_ids([DAY, DAY]))[1]) == sorted(users)
    assert len(sent) == 1  # the bitmaps and the check of the names held: one round trip; nothing to learn
    assert sent[0].count(b"MGET") == 4 and b"LRANGE" not in sent[0]
    assert "user ids read again" not in caplog.text


def numbered_in_order(redis_url: str, keys: KeySchema, users: Sequence[str]) -> ActivityWriter:
    """A writer that numbered ``users`` one by one: in their order (in a one-bucket schema, number n is users[n])."""
    writer = ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS)
    for user in users:
        writer.numbers([user])
    return writer


async def test_a_names_list_made_again_is_read_again(
    redis_url: str, redis_prefix: str, async_client: aioredis.Redis, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    one = KeySchema(redis_prefix, ZONE, 1)
    users = [f"user-{n}" for n in range(10)]
    numbered_in_order(redis_url, one, users).write(_batch({DAY: users[:5]}))
    reader = ActivityReader(async_client, one)
    assert await reader.active_ids([DAY]) == [users[:5]]
    assert reader.names_known == 5
    # A Redis restarted without persistence, then a replay by a new consumer: the users numbered anew in another
    # order (a newcomer first): every bit means another user now, and the id held last is elsewhere.
    redis_client.delete(*redis_client.scan_iter(match=one.pattern()))
    renumbered = ["newcomer", *reversed(users)]
    replay = numbered_in_order(redis_url, one, renumbered)
    replay.write(_batch({DAY: users[:5], DAY + timedelta(days=1): ["newcomer", users[9]]}))
    found = await reader.active_ids([DAY, DAY + timedelta(days=1)])
    assert found == [[f"user-{n}" for n in (4, 3, 2, 1, 0)], ["newcomer", users[9]]]
    assert reader.names_known == 11  # up to the highest bit (user-0, number 10), read again from 0
    read_again = [record for record in caplog.records if record.getMessage() == "user ids read again"]
    assert len(read_again) == 1 and read_again[0].levelname == "WARNING"
    assert read_again[0].key == one.names(0)  # type: ignore[attr-defined]


async def test_a_names_list_made_again_with_the_same_last_id_is_read_again(
    redis_url: str, redis_prefix: str, async_client: aioredis.Redis, redis_client: Any
) -> None:
    one = KeySchema(redis_prefix, ZONE, 1)
    numbered_in_order(redis_url, one, ["a", "b", "c"]).write(_batch({DAY: ["a", "b", "c"]}))
    reader = ActivityReader(async_client, one)
    assert await reader.active_ids([DAY]) == [["a", "b", "c"]]
    redis_client.delete(*redis_client.scan_iter(match=one.pattern()))  # lost; a replay numbers b, a, c
    numbered_in_order(redis_url, one, ["b", "a", "c"]).write(_batch({DAY: ["a"]}))  # bit 1: user "a"
    assert await reader.active_ids([DAY]) == [["a"]]  # the held names say ["b"]


async def test_a_names_list_deleted_by_hand_fails_every_process(
    writer: ActivityWriter, reader: ActivityReader, async_client: aioredis.Redis, keys: KeySchema, redis_client: Any
) -> None:
    users = [f"user-{n}" for n in range(30)]
    writer.write(_batch({DAY: users}))
    assert sorted((await reader.active_ids([DAY]))[0]) == sorted(users)
    bucket = bucket_of(users[0], 4)
    redis_client.delete(keys.names(bucket))  # by hand: the ids hash (and when the list was begun) remain
    # A process that read the list no longer finds its last id there: it drops what it held rather than trust
    # it, and says so, as a new process does, rather than answering without those users.
    for process in (reader, ActivityReader(async_client, keys)):
        with pytest.raises(IndexIncomplete, match=r"lists 0 user ids"):
            await process.active_ids([DAY])
    listed = in_number_order(writer, keys, [user for user in users if bucket_of(user, 4) == bucket])
    redis_client.rpush(keys.names(bucket), *listed)  # listed again (as reindex does)
    assert sorted((await ActivityReader(async_client, keys).active_ids([DAY]))[0]) == sorted(users)


async def test_names_held_past_a_list_rolled_back_are_read_again(
    redis_url: str, redis_prefix: str, async_client: aioredis.Redis, redis_client: Any
) -> None:
    one = KeySchema(redis_prefix, ZONE, 1)
    writer = numbered_in_order(redis_url, one, ["a", "b", "c", "d"])
    writer.write(_batch({DAY: ["a", "b", "c", "d"]}))
    reader = ActivityReader(async_client, one)
    assert await reader.active_ids([DAY]) == [["a", "b", "c", "d"]]
    # A Redis restarted from a snapshot taken when only a and b were numbered (RDB persistence loses the last
    # writes): the hash and the list end at number 1, the time the list was begun is the snapshot's, the same.
    redis_client.ltrim(one.names(0), 0, 1)
    redis_client.hdel(one.ids(0), "c", "d")
    redis_client.delete(one.day_bits(DAY, 0))
    redis_client.setbit(one.day_bits(DAY, 0), 0, 1)
    # After the restart, a consumer numbers two other users: x and y get numbers 2 and 3.
    replay = numbered_in_order(redis_url, one, ["x", "y"])
    replay.write(_batch({DAY: ["y"]}))
    assert replay.numbers(["x", "y"]) == {"x": (0, 2), "y": (0, 3)}
    assert await reader.active_ids([DAY]) == [["a", "y"]]  # the held names say ["a", "d"]


async def test_a_bit_without_a_name_is_an_incomplete_index(
    writer: ActivityWriter, async_client: aioredis.Redis, keys: KeySchema, redis_client: Any
) -> None:
    users = [f"user-{n}" for n in range(40)]
    writer.write(_batch({DAY: users}))
    bucket = bucket_of(users[0], 4)
    listed = redis_client.llen(keys.names(bucket))
    redis_client.ltrim(keys.names(bucket), 0, listed - 3)  # the last two names lost
    reader = ActivityReader(async_client, keys)
    with pytest.raises(IndexIncomplete) as caught:
        await reader.active_ids([DAY + timedelta(days=1), DAY])
    assert isinstance(caught.value, StoreUnavailable)  # the API answers it as it answers a Redis failure
    message = str(caught.value)
    assert keys.names(bucket) in message
    assert f"lists {listed - 2} user ids but the index has user number {listed - 1}" in message
    assert "active-users reindex" in message
    assert await reader.active_ids([DAY + timedelta(days=1)]) == [[]]  # a day without bits needs no name
    with pytest.raises(IndexIncomplete, match=f"lists {listed - 2} user ids"):  # still short: still refused
        await reader.active_ids([DAY])
    assert reader.names_known == sum(redis_client.llen(keys.names(b)) for b in range(4))  # the names it got


async def test_a_hash_numbered_without_names_is_an_incomplete_index(
    redis_url: str, redis_prefix: str, async_client: aioredis.Redis, redis_client: Any
) -> None:
    one = KeySchema(redis_prefix, ZONE, 1)
    redis_client.hset(one.ids(0), mapping={"old-0": 0, "old-1": 1})  # numbered by a version without names lists
    writer = ActivityWriter(redis.Redis.from_url(redis_url), one, SETTINGS)
    writer.write(_batch({DAY: ["old-1", "new-2"]}))
    with pytest.raises(IndexIncomplete, match=r"lists 0 user ids but the index has user number 2"):
        await ActivityReader(async_client, one).active_ids([DAY])
    redis_client.rpush(one.names(0), "old-0", "old-1", "new-2")  # what reindex lists
    assert await ActivityReader(async_client, one).active_ids([DAY]) == [["old-1", "new-2"]]


async def test_a_names_key_of_another_type_is_a_failed_read(
    writer: ActivityWriter, reader: ActivityReader, keys: KeySchema, redis_client: Any
) -> None:
    writer.write(_batch({DAY: ["alice"]}))
    bucket = bucket_of("alice", 4)
    redis_client.delete(keys.names(bucket))
    redis_client.set(keys.names(bucket), "not a list")
    with pytest.raises(StoreUnavailable, match="Redis read failed") as caught:
        await reader.active_ids([DAY])
    assert not isinstance(caught.value, IndexIncomplete)
    assert isinstance(caught.value.__cause__, redis.ResponseError)


async def test_active_ids_on_the_cluster(redis_cluster: str, cluster_prefix: str, cluster_client: Any) -> None:
    settings = Settings(redis_url=redis_cluster, redis_cluster=True, redis_timeout_s=5, activity_timezone=ZONE)
    keys = KeySchema(cluster_prefix, ZONE, 16)
    nodes = {cluster_client.get_node_from_key(keys.names(bucket)).name for bucket in range(16)}
    assert len(nodes) == 3  # the buckets' names lists live on every primary
    sync = redis_client(settings)
    writer = ActivityWriter(sync, keys, SETTINGS)
    users = [f"user-{n}" for n in range(400)]
    written = {DAYS[0]: users[:250], DAYS[2]: users[200:]}
    writer.write(_batch(written))
    client = async_redis_client(settings)
    try:
        reader = ActivityReader(client, keys)
        found = await reader.active_ids(DAYS[:3])
        assert found == [in_number_order(writer, keys, users[:250]), [], in_number_order(writer, keys, users[200:])]
        assert reader.names_known == 400
        writer.write(_batch({DAYS[1]: [f"late-{n}" for n in range(30)]}))
        assert sorted((await reader.active_ids([DAYS[1]]))[0]) == sorted(f"late-{n}" for n in range(30))
        assert reader.names_known == 430
        bucket = bucket_of(users[0], 16)
        cluster_client.delete(keys.names(bucket))
        with pytest.raises(IndexIncomplete, match=keys.names(bucket).replace("{", r"\{").replace("}", r"\}")):
            await ActivityReader(client, keys).active_ids([DAYS[0]])  # a new process: it needs that list
    finally:
        await client.aclose()
        sync.close()


# ------------------------------------------------------------------------------------------- ping and failures


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_ping() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server)
    reader = ActivityReader(client, KeySchema("t:", "UTC"))
    await reader.ping()
    server.connected = False
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await reader.ping()
    await client.aclose()


async def test_ping_on_the_cluster(redis_cluster: str) -> None:
    client = async_redis_client(Settings(redis_url=redis_cluster, redis_cluster=True, redis_timeout_s=5))
    try:
        await ActivityReader(client, KeySchema("t:", "UTC")).ping()  # cluster_state ok: no raise
    finally:
        await client.aclose()


async def test_reader_against_a_closed_port() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    reader = ActivityReader(dead, KeySchema("t:", "UTC"))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await reader.ping()
        assert isinstance(caught.value.__cause__, redis.ConnectionError | OSError)
        with pytest.raises(StoreUnavailable, match="Redis read failed"):
            await reader.active_ids([DAY])
        with pytest.raises(StoreUnavailable, match="Redis read failed"):
            await reader.day_versions([DAY])
    finally:
        await dead.aclose()


# --------------------------------------------------------------------------------------- _bits_used, _selectors


@pytest.mark.parametrize(
    ("bitmap", "used", "offsets"),
    [
        (b"", 0, []),
        (b"\x00", 0, []),
        (b"\x00\x00\x00", 0, []),
        (b"\x80", 1, [0]),  # the first bit: a byte's most significant
        (b"\x01", 8, [7]),  # the last bit of a byte
        (b"\xff", 8, list(range(8))),
        (b"\x40", 2, [1]),
        (b"\x00\x80", 9, [8]),  # the first bit of the second byte
        (b"\x80\x00\x00", 1, [0]),  # trailing zero bytes need no names
        (b"\x00\x00\x01", 24, [23]),
        (b"\xa0\x00\x11\x00", 24, [0, 2, 19, 23]),  # multi-byte, a zero byte inside and at the end
        (b"\x00" * 999 + b"\x02", 7999, [7998]),
    ],
)
def test_bits_used_and_selectors(bitmap: bytes, used: int, offsets: list[int]) -> None:
    assert _bits_used(bitmap) == used
    selectors = _selectors(bitmap)
    assert list(compress(range(len(bitmap) * 8), selectors)) == offsets
    assert set(selectors) <= {0, 1}
    if bitmap:
        assert len(selectors) == len(bitmap) * 8  # one selector per bit


@pytest.mark.parametrize("offsets", [[0], [7], [8], [3, 4, 5], [1, 100, 1001], list(range(0, 64, 3))])
def test_bits_used_and_selectors_agree_with_redis_setbit(
    redis_client: Any, redis_prefix: str, offsets: list[int]
) -> None:
    key = f"{redis_prefix}bits"
    for offset in offsets:
        redis_client.setbit(key, offset, 1)
    bitmap: bytes = redis_client.execute_command("GET", key, NEVER_DECODE=True)
    assert _bits_used(bitmap) == max(offsets) + 1
    assert list(compress(range(len(bitmap) * 8), _selectors(bitmap))) == offsets
    assert redis_client.bitcount(key) == sum(_selectors(bitmap))


@pytest.mark.parametrize(
    "ids",
    [[], ["a"], ["a", "b", "c"], ["é-ü", "日本", ""], ["a\nb", "c"], ["x", "y\n"], ["\n"], ["", ""]],
)
def test_decoded_ids(ids: list[str]) -> None:
    assert _decoded([user.encode() for user in ids]) == ids  # ids holding a newline too: decoded one by one


def test_decoded_ids_are_strict_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        _decoded([b"ok", b"\xff"])
