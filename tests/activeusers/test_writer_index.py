"""The writer's numbering and bitmaps against the real Redis: what it stores (decoded back into user ids), expiry,
idempotence, chunking, the memo of known numbers, and several writers numbering the same new users at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import redis
from streams import bucket_state, index_label

from activeusers import store
from activeusers.days import day_expiry_s
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema, bucket_of
from activeusers.settings import Settings
from activeusers.store import ActivityWriter, Buckets

ZONE = "America/New_York"
SETTINGS = Settings(activity_timezone=ZONE, retention_days=400, hour_retention_days=90, member_retention_days=45)
DST_DAY = date(2031, 3, 9)  # spring forward in New York
DAY = date(2031, 6, 1)


@pytest.fixture
def keys(redis_prefix: str) -> KeySchema:
    return KeySchema(redis_prefix, ZONE, 8)


@pytest.fixture
def writer(stack: Any, keys: KeySchema) -> Iterator[ActivityWriter]:
    client = redis.Redis.from_url(stack.redis_url)
    yield ActivityWriter(client, keys, SETTINGS)
    client.close()


def _batch(*active: tuple[date, int, str], created: tuple[tuple[date, str], ...] = ()) -> Buckets:
    buckets = Buckets()
    for day, hour, user in active:
        buckets.add_active(day, hour, user, 1)
    for day, user in created:
        buckets.add_created(day, user, 1)
    return buckets


def test_write_stores_sets_bitmaps_and_expiry(writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    writer.write(_batch((DST_DAY, 1, "alice"), (DST_DAY, 3, "bob"), (DAY, 12, "alice"), created=((DST_DAY, "bob"),)))
    assert bucket_state(redis_client, keys) == {
        keys.day(DST_DAY): {"alice", "bob"},
        keys.day(DAY): {"alice"},
        index_label("day", "2031-03-09"): {"alice", "bob"},
        index_label("day", "2031-06-01"): {"alice"},
        index_label("hour", "2031-03-09T01"): {"alice"},
        index_label("hour", "2031-03-09T03"): {"bob"},
        index_label("hour", "2031-06-01T12"): {"alice"},
        index_label("new", "2031-03-09"): {"bob"},
    }
    zone = SETTINGS.zone
    alice, bob = bucket_of("alice", 8), bucket_of("bob", 8)
    assert redis_client.expiretime(keys.day(DST_DAY)) == day_expiry_s(DST_DAY, zone, 45)
    assert redis_client.expiretime(keys.day_bits(DST_DAY, bob)) == day_expiry_s(DST_DAY, zone, 400)
    assert redis_client.expiretime(keys.hour_bits(DAY, 12, alice)) == day_expiry_s(DAY, zone, 90)
    assert redis_client.expiretime(keys.new_bits(DST_DAY, bob)) == day_expiry_s(DST_DAY, zone, 400)
    # the 23-hour day ends at 2031-03-10T04:00Z; 400 days of 86 400 s later
    assert redis_client.expiretime(keys.day_bits(DST_DAY, bob)) == 1_930_881_600 + 400 * 86_400
    assert redis_client.ttl(keys.ids(alice)) == -1  # the numbering is kept: numbers are never reused


def test_write_is_idempotent_and_additive(stack: Any, writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    first = _batch((DAY, 5, "alice"), created=((DAY, "alice"),))
    writer.write(first)
    state = bucket_state(redis_client, keys)
    writer.write(first)
    other = ActivityWriter(redis.Redis.from_url(stack.redis_url), keys, SETTINGS)  # no memo: asks Redis
    other.write(first)
    assert bucket_state(redis_client, keys) == state
    other.write(_batch((DAY, 5, "bob")))
    assert bucket_state(redis_client, keys) == {
        keys.day(DAY): {"alice", "bob"},
        index_label("day", "2031-06-01"): {"alice", "bob"},
        index_label("hour", "2031-06-01T05"): {"alice", "bob"},
        index_label("new", "2031-06-01"): {"alice"},
    }


def test_a_known_user_costs_no_extra_round_trip(
    writer: ActivityWriter, keys: KeySchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends: list[int] = []
    original = ActivityWriter._send

    def counted(self: ActivityWriter, commands: Any, scripts: Any = (), then: Any = None) -> list[Any]:
        sent = list(commands)
        sends.append(len(sent))
        return original(self, sent, scripts, then)

    monkeypatch.setattr(ActivityWriter, "_send", counted)
    writer.write(_batch((DAY, 5, "alice"), (DAY, 6, "bob")))
    assert len(sends) == 2  # the numbers of the new users, then the batch
    writer.write(_batch((DAY, 7, "alice"), (DAY + timedelta(days=1), 0, "bob")))
    assert len(sends) == 3
    assert writer.numbers(["alice", "bob"]) == {
        "alice": (bucket_of("alice", 8), 0),
        "bob": (bucket_of("bob", 8), 0 if bucket_of("bob", 8) != bucket_of("alice", 8) else 1),
    }
    assert len(sends) == 3


def test_expiry_is_sent_once_then_refreshed(stack: Any, keys: KeySchema, redis_client) -> None:
    now = [1000.0]
    writer = ActivityWriter(redis.Redis.from_url(stack.redis_url), keys, SETTINGS, clock=lambda: now[0])
    batch = _batch((DAY, 5, "alice"))
    bucket = bucket_of("alice", 8)
    bits = [keys.day(DAY), keys.day_bits(DAY, bucket), keys.hour_bits(DAY, 5, bucket), keys.counts(DAY, bucket)]
    writer.write(batch)
    for key in bits:
        redis_client.persist(key)  # as after a restart without persistence: the keys lost their expiry
    now[0] += store.EXPIRY_REFRESH_S - 1
    writer.write(batch)
    assert [redis_client.ttl(key) for key in bits] == [-1] * 4, "within the refresh interval expiry is not sent"
    now[0] += 1
    writer.write(batch)
    zone = SETTINGS.zone
    assert [redis_client.expiretime(key) for key in bits] == [
        day_expiry_s(DAY, zone, 45),
        day_expiry_s(DAY, zone, 400),
        day_expiry_s(DAY, zone, 90),
        day_expiry_s(DAY, zone, 400),
    ]
    assert bucket_state(redis_client, keys)[index_label("hour", "2031-06-01T05")] == {"alice"}


def test_another_writer_sends_the_expiry_it_has_not_sent(stack: Any, keys: KeySchema, redis_client) -> None:
    first = ActivityWriter(redis.Redis.from_url(stack.redis_url), keys, SETTINGS)
    first.write(_batch((DAY, 5, "alice")))
    bits = keys.day_bits(DAY, bucket_of("alice", 8))
    redis_client.persist(bits)
    ActivityWriter(redis.Redis.from_url(stack.redis_url), keys, SETTINGS).write(_batch((DAY, 5, "alice")))
    assert redis_client.expiretime(bits) == day_expiry_s(DAY, SETTINGS.zone, 400)


def test_each_store_keeps_its_own_retention(stack: Any, keys: KeySchema, redis_client) -> None:
    wall = day_expiry_s(DAY, SETTINGS.zone, 45) + 1.0  # DAY's members just expired; its counts have not
    writer = ActivityWriter(redis.Redis.from_url(stack.redis_url), keys, SETTINGS, wall=lambda: wall)
    writer.write(_batch((DAY, 5, "alice"), created=((DAY, "bob"),)))
    writer.write(_batch((DAY, 6, "carol")))  # a second batch of the day: still no set (no key without expiry)
    long_ago = DAY - timedelta(days=500)
    writer.write(_batch((long_ago, 1, "dave"), created=((long_ago, "dave"),)))
    assert bucket_state(redis_client, keys) == {
        index_label("day", "2031-06-01"): {"alice", "carol"},
        index_label("hour", "2031-06-01T05"): {"alice"},
        index_label("hour", "2031-06-01T06"): {"carol"},
        index_label("new", "2031-06-01"): {"bob"},
    }
    kept = (keys.versions(), *(keys.ids(bucket) for bucket in range(keys.buckets)))  # a field per day / user, for good
    assert all(redis_client.ttl(key) > 0 for key in redis_client.scan_iter(match=keys.pattern()) if key not in kept)


def test_write_of_nothing_writes_nothing(writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    writer.write(Buckets())
    assert list(redis_client.scan_iter(match=keys.pattern())) == []


def test_chunked_numbering_and_bits(
    writer: ActivityWriter, keys: KeySchema, redis_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "NUMBER_CHUNK", 7)
    monkeypatch.setattr(store, "BITS_CHUNK", 5)
    monkeypatch.setattr(store, "SADD_CHUNK", 11)
    users = {f"user-{i}" for i in range(300)}
    batch = Buckets()
    for user in users:
        batch.add_active(DAY, 0, user, 1)
        batch.add_created(DAY, user, 1)
    writer.write(batch)
    state = bucket_state(redis_client, keys)
    assert state[keys.day(DAY)] == state[index_label("day", "2031-06-01")] == users
    assert state[index_label("hour", "2031-06-01T00")] == state[index_label("new", "2031-06-01")] == users
    assert sum(redis_client.hlen(keys.ids(b)) for b in range(8)) == 300


def test_the_memo_starts_over_past_its_bound(
    writer: ActivityWriter, keys: KeySchema, redis_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "NUMBER_MEMO_USERS", 10)
    for start in range(0, 40, 8):
        writer.write(_batch(*((DAY, 1, f"u{n}") for n in range(start, start + 8))))
    writer.write(_batch(*((DAY, 2, f"u{n}") for n in range(40))))
    state = bucket_state(redis_client, keys)
    assert (
        state[index_label("day", "2031-06-01")]
        == state[index_label("hour", "2031-06-01T02")]
        == {f"u{n}" for n in range(40)}
    )


def test_numbering_survives_a_script_flush(writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    redis_client.script_flush()  # a Redis that never saw the script: the writer loads it and asks again
    writer.write(_batch((DAY, 1, "alice")))
    assert bucket_state(redis_client, keys)[index_label("day", "2031-06-01")] == {"alice"}


def test_concurrent_writers_agree_on_dense_numbers(stack: Any, keys: KeySchema, redis_client) -> None:
    users = [f"racer-{n}" for n in range(3000)]
    results: list[dict[str, tuple[int, int]]] = []
    ready = threading.Barrier(6)

    def number(seed: int) -> None:
        client = redis.Redis.from_url(stack.redis_url)
        writer = ActivityWriter(client, keys, SETTINGS)
        order = users[seed * 500 :] + users[: seed * 500]  # each starts elsewhere, so they overlap
        ready.wait()
        found: dict[str, tuple[int, int]] = {}
        for start in range(0, len(order), 250):
            found |= writer.numbers(order[start : start + 250])
        results.append(found)
        client.close()

    threads = [threading.Thread(target=number, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and all(found == results[0] for found in results)
    for bucket in range(8):
        numbers = sorted(n for user, (b, n) in results[0].items() if b == bucket)
        assert numbers == list(range(len(numbers))), f"bucket {bucket} not dense"
        assert redis_client.hlen(keys.ids(bucket)) == len(numbers)
    assert all(b == bucket_of(user, 8) for user, (b, _) in results[0].items())


def test_a_new_bitmap_is_created_at_its_buckets_size_with_headroom(stack: Any, redis_prefix: str, redis_client) -> None:
    one = KeySchema(redis_prefix, ZONE, 1)  # one bucket: every user's number is its place in the list
    writer = ActivityWriter(redis.Redis.from_url(stack.redis_url), one, SETTINGS)
    users = [f"user-{n}" for n in range(7812)]
    writer.numbers(users)
    writer.write(_batch((DAY, 3, users[0]), (DAY, 3, users[10])))  # low numbers, in a bucket of 7,812 users
    room = max(store.HEADROOM_MIN_BITS, 7812 / store.HEADROOM_SHARE)
    size = int((7812 + room) // 8) + 1
    day, hour = one.day_bits(DAY, 0), one.hour_bits(DAY, 3, 0)
    assert redis_client.strlen(day) == redis_client.strlen(hour) == size
    grown = redis_prefix + "grown"
    for number in (3999, 7811):  # as SETBIT alone builds a bitmap of a growing bucket: room for as much again
        redis_client.setbit(grown, number, 1)
    # allocated once at its size: no more than Redis' per-key overhead above its length, less than the grown one
    assert redis_client.memory_usage(day, samples=0) <= size + 160 < redis_client.memory_usage(grown, samples=0)
    assert redis_client.strlen(one.counts(DAY, 0)) == 104
    state = bucket_state(redis_client, one)
    assert (
        state[index_label("day", "2031-06-01")]
        == state[index_label("hour", "2031-06-01T03")]
        == {
            users[0],
            users[10],
        }
    )
    writer.write(_batch(*((DAY, 3, user) for user in users[:500])))  # many bits per bitmap, same size
    assert redis_client.strlen(day) == size
    assert bucket_state(redis_client, one)[index_label("hour", "2031-06-01T03")] == set(users[:500])


def test_records_split_across_calls_count_exactly(
    stack: Any, writer: ActivityWriter, keys: KeySchema, redis_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "BITS_CHUNK", 7)
    users = {f"user-{i}" for i in range(120)}
    batch = Buckets()
    for i, user in enumerate(sorted(users)):
        batch.add_active(DAY + timedelta(days=i % 3), i % 24, user, 1)
        batch.add_active(DAY, 23, user, 1)
    writer.write(batch)
    state = bucket_state(redis_client, keys)  # asserts that every counter equals its bitmap's bits
    writer.write(batch)
    ActivityWriter(redis.Redis.from_url(stack.redis_url), keys, SETTINGS).write(batch)  # no memo: every expiry
    assert bucket_state(redis_client, keys) == state
    assert state[index_label("hour", "2031-06-01T23")] == users


def test_numbering_gives_a_repeated_id_one_number(keys: KeySchema, redis_client) -> None:
    ids = keys.ids(0)
    numbers = redis_client.evalsha(redis_client.script_load(store.NUMBER_USERS.source), 1, ids, "a", "b", "a", "c", "b")
    assert numbers == [0, 1, 0, 2, 1]
    assert redis_client.evalsha(store.NUMBER_USERS.sha, 1, ids, "c", "d") == [2, 3]
    assert redis_client.hgetall(ids) == {"a": "0", "b": "1", "c": "2", "d": "3"}


def test_a_bitmap_past_its_expiry_on_redis_clock_is_not_written(stack: Any, keys: KeySchema, redis_client) -> None:
    old = date(2020, 1, 1)  # its retention ended long ago; this writer's clock says otherwise
    writer = ActivityWriter(redis.Redis.from_url(stack.redis_url), keys, SETTINGS, wall=lambda: 0.0)
    writer.write(_batch((old, 1, "alice"), created=((old, "alice"),)))
    kept = (keys.versions(), *(keys.ids(bucket) for bucket in range(keys.buckets)))  # no expiry by design
    left = [key for key in redis_client.scan_iter(match=keys.pattern()) if key not in kept]
    assert left == [], "no key without a future expiry"


def test_server_errors_become_store_unavailable(writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    redis_client.set(keys.day(DAY), "not a set")  # WRONGTYPE on SADD
    with pytest.raises(StoreUnavailable, match="Redis write failed"):
        writer.write(_batch((DAY, 0, "u")))
    redis_client.delete(keys.day(DAY))
    writer.write(_batch((DAY, 0, "u")))  # the connection stayed in step with its replies
    assert redis_client.smembers(keys.day(DAY)) == {"u"}


def test_numbers_of_a_dead_redis_become_store_unavailable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(StoreUnavailable, match="numbering failed"):
        ActivityWriter(dead, KeySchema("x:", "UTC"), SETTINGS).numbers(["u"])
    dead.close()
