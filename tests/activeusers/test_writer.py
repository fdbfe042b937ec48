"""The writer (:mod:`activeusers.writer`): its batches (:class:`UserSets`), and against the real Redis its numbering,
names lists and bitmaps: what it stores (decoded back into user ids through the names lists), expiry, idempotence,
chunking, the memo of known numbers, several writers numbering the same new users at once, and a bucket whose ids
hash was numbered before the names lists existed (the list is never misaligned)."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from activeusers import writer as writer_module
from activeusers.days import day_expiry_s
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema, bucket_of
from activeusers.scripts import APPEND_NAMES, HEADROOM_MIN_BITS, HEADROOM_SHARE
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from tests.support.indexstate import bucket_state
from tests.support.oracle import index_label
from tests.support.usersets import members

ZONE = "America/New_York"
SETTINGS = Settings(activity_timezone=ZONE, retention_days=400, hour_retention_days=90)
DST_DAY = date(2031, 3, 9)  # spring forward in New York
DAY = date(2031, 6, 1)


@pytest.fixture
def keys(redis_prefix: str) -> KeySchema:
    return KeySchema(redis_prefix, ZONE, 8)


@pytest.fixture
def writer(redis_url: str, keys: KeySchema) -> Iterator[ActivityWriter]:
    client = redis.Redis.from_url(redis_url)
    yield ActivityWriter(client, keys, SETTINGS)
    client.close()


def names_keys(keys: KeySchema, bucket: int) -> tuple[str, str, str, str]:
    """A bucket's numbering and names keys, which never expire: its ids hash, names list, when it was begun, and
    the ids numbered while it was behind (gone once listed)."""
    return keys.ids(bucket), keys.names(bucket), keys.names_made(bucket), keys.unlisted(bucket)


def _batch(*active: tuple[date, int, str], created: tuple[tuple[date, str], ...] = ()) -> UserSets:
    buckets = UserSets()
    for day, hour, user in active:
        buckets.add_active(day, hour, user, 1)
    for day, user in created:
        buckets.add_created(day, user, 1)
    return buckets


# ----------------------------------------------------------------------------------------------------------- UserSets


def test_buckets_start_empty() -> None:
    buckets = UserSets()
    assert not buckets
    assert members(buckets) == 0
    assert buckets.newest_event_ms == -1


def test_buckets_accumulate_distinct_users() -> None:
    buckets = UserSets()
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
    buckets = UserSets()
    buckets.add_created(DAY, "carol", 7)
    buckets.add_created(DAY, "carol", 5)
    assert buckets  # a batch of only user.created events still has something to write
    assert dict(buckets.created) == {DAY: {"carol"}}
    assert not buckets.days
    assert members(buckets) == 1
    assert buckets.newest_event_ms == 7


def test_buckets_members_counts_every_addition() -> None:
    buckets = UserSets()
    for i in range(5):
        buckets.add_active(DAY, i, f"u{i}", i)
    buckets.add_created(DAY, "u0", 0)
    assert members(buckets) == 5 + 5 + 1


def test_buckets_do_not_share_state() -> None:
    first, second = UserSets(), UserSets()
    first.add_active(DAY, 1, "u", 1)
    assert not second
    assert second.days == {}


# ---------------------------------------------------------------------------------------------------- ActivityWriter


def test_write_stores_bitmaps_names_and_expiry(writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    writer.write(_batch((DST_DAY, 1, "alice"), (DST_DAY, 3, "bob"), (DAY, 12, "alice"), created=((DST_DAY, "bob"),)))
    assert bucket_state(redis_client, keys) == {  # no day set; every bit named through its bucket's names list
        index_label("day", "2031-03-09"): {"alice", "bob"},
        index_label("day", "2031-06-01"): {"alice"},
        index_label("hour", "2031-03-09T01"): {"alice"},
        index_label("hour", "2031-03-09T03"): {"bob"},
        index_label("hour", "2031-06-01T12"): {"alice"},
        index_label("new", "2031-03-09"): {"bob"},
    }
    zone = SETTINGS.zone
    alice, bob = bucket_of("alice", 8), bucket_of("bob", 8)
    assert redis_client.expiretime(keys.day_bits(DST_DAY, bob)) == day_expiry_s(DST_DAY, zone, 400)
    assert redis_client.expiretime(keys.hour_bits(DAY, 12, alice)) == day_expiry_s(DAY, zone, 90)
    assert redis_client.expiretime(keys.new_bits(DST_DAY, bob)) == day_expiry_s(DST_DAY, zone, 400)
    # the 23-hour day ends at 2031-03-10T04:00Z; 400 days of 86 400 s later
    assert redis_client.expiretime(keys.day_bits(DST_DAY, bob)) == 1_930_881_600 + 400 * 86_400
    assert redis_client.ttl(keys.ids(alice)) == -1  # the numbering is kept: numbers are never reused
    assert redis_client.ttl(keys.names(alice)) == -1  # and so are the ids behind them
    assert redis_client.ttl(keys.names_made(alice)) == -1  # and when their list was begun
    assert redis_client.lrange(keys.names(alice), 0, -1)[0] == "alice"
    assert redis_client.lrange(keys.names(bob), 0, -1)[-1] == "bob"
    assert not list(redis_client.scan_iter(match=keys.old_day_pattern()))


def test_write_is_idempotent_and_additive(
    redis_url: str, writer: ActivityWriter, keys: KeySchema, redis_client
) -> None:
    first = _batch((DAY, 5, "alice"), created=((DAY, "alice"),))
    writer.write(first)
    state = bucket_state(redis_client, keys)
    writer.write(first)
    other = ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS)  # no memo: asks Redis
    other.write(first)
    assert bucket_state(redis_client, keys) == state
    other.write(_batch((DAY, 5, "bob")))
    assert bucket_state(redis_client, keys) == {
        index_label("day", "2031-06-01"): {"alice", "bob"},
        index_label("hour", "2031-06-01T05"): {"alice", "bob"},
        index_label("new", "2031-06-01"): {"alice"},
    }


def test_of_writes_under_the_settings_key_schema(stack: Any, redis_prefix: str, redis_client) -> None:
    settings = dataclasses.replace(SETTINGS, redis_key_prefix=redis_prefix, user_buckets=8)
    client = redis.Redis.from_url(stack.redis_url)
    ActivityWriter.of(client, settings).write(_batch((DAY, 5, "alice")))
    assert bucket_state(redis_client, KeySchema.of(settings)) == {
        index_label("day", "2031-06-01"): {"alice"},
        index_label("hour", "2031-06-01T05"): {"alice"},
    }
    client.close()


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


def test_expiry_is_sent_once_then_refreshed(redis_url: str, keys: KeySchema, redis_client) -> None:
    now = [1000.0]
    writer = ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS, clock=lambda: now[0])
    batch = _batch((DAY, 5, "alice"))
    bucket = bucket_of("alice", 8)
    bits = [keys.day_bits(DAY, bucket), keys.hour_bits(DAY, 5, bucket), keys.counts(DAY, bucket)]
    writer.write(batch)
    for key in bits:
        redis_client.persist(key)  # as after a restart without persistence: the keys lost their expiry
    now[0] += writer_module.EXPIRY_REFRESH_S - 1
    writer.write(batch)
    assert [redis_client.ttl(key) for key in bits] == [-1] * 3, "within the refresh interval expiry is not sent"
    now[0] += 1
    writer.write(batch)
    zone = SETTINGS.zone
    assert [redis_client.expiretime(key) for key in bits] == [
        day_expiry_s(DAY, zone, 400),
        day_expiry_s(DAY, zone, 90),
        day_expiry_s(DAY, zone, 400),
    ]
    assert bucket_state(redis_client, keys)[index_label("hour", "2031-06-01T05")] == {"alice"}


def test_another_writer_sends_the_expiry_it_has_not_sent(redis_url: str, keys: KeySchema, redis_client) -> None:
    first = ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS)
    first.write(_batch((DAY, 5, "alice")))
    bits = keys.day_bits(DAY, bucket_of("alice", 8))
    redis_client.persist(bits)
    ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS).write(_batch((DAY, 5, "alice")))
    assert redis_client.expiretime(bits) == day_expiry_s(DAY, SETTINGS.zone, 400)


def test_each_store_keeps_its_own_retention(redis_url: str, keys: KeySchema, redis_client) -> None:
    wall = day_expiry_s(DAY, SETTINGS.zone, 90) + 1.0  # DAY's hours just expired; its day and counts have not
    writer = ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS, wall=lambda: wall)
    writer.write(_batch((DAY, 5, "alice"), created=((DAY, "bob"),)))
    writer.write(_batch((DAY, 6, "carol")))  # a second batch of the day: still no hour (no key without expiry)
    long_ago = DAY - timedelta(days=500)
    writer.write(_batch((long_ago, 1, "dave"), created=((long_ago, "dave"),)))
    assert bucket_state(redis_client, keys) == {
        index_label("day", "2031-06-01"): {"alice", "carol"},
        index_label("new", "2031-06-01"): {"bob"},
    }
    # a field per day / user, for good: the versions, and per bucket the numbering, the names behind it and the
    # users' first days
    kept = (
        keys.versions(),
        *(key for b in range(keys.buckets) for key in (*names_keys(keys, b), keys.first_days(b))),
    )
    assert all(redis_client.ttl(key) > 0 for key in redis_client.scan_iter(match=keys.pattern()) if key not in kept)
    # dave was numbered (and named) though none of his bitmaps was written
    assert "dave" in redis_client.lrange(keys.names(bucket_of("dave", 8)), 0, -1)


def test_write_of_nothing_writes_nothing(writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    writer.write(UserSets())
    assert list(redis_client.scan_iter(match=keys.pattern())) == []


def test_chunked_numbering_and_bits(
    writer: ActivityWriter, keys: KeySchema, redis_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "NUMBER_CHUNK", 7)
    monkeypatch.setattr(writer_module, "BITS_CHUNK", 5)
    users = {f"user-{i}" for i in range(300)}
    batch = UserSets()
    for user in users:
        batch.add_active(DAY, 0, user, 1)
        batch.add_created(DAY, user, 1)
    writer.write(batch)
    state = bucket_state(redis_client, keys)
    assert state[index_label("day", "2031-06-01")] == users
    assert state[index_label("hour", "2031-06-01T00")] == state[index_label("new", "2031-06-01")] == users
    assert sum(redis_client.hlen(keys.ids(b)) for b in range(8)) == 300


def test_the_memo_starts_over_past_its_bound(
    writer: ActivityWriter, keys: KeySchema, redis_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "NUMBER_MEMO_USERS", 10)
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


def test_concurrent_writers_agree_on_dense_numbers(redis_url: str, keys: KeySchema, redis_client) -> None:
    users = [f"racer-{n}" for n in range(3000)]
    results: list[dict[str, tuple[int, int]]] = []
    ready = threading.Barrier(6)

    def number(seed: int) -> None:
        client = redis.Redis.from_url(redis_url)
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


def test_a_new_bitmap_is_created_at_its_buckets_size_with_headroom(
    redis_url: str, redis_prefix: str, redis_client
) -> None:
    one = KeySchema(redis_prefix, ZONE, 1)  # one bucket: every user's number is its place in the list
    writer = ActivityWriter(redis.Redis.from_url(redis_url), one, SETTINGS)
    users = [f"user-{n}" for n in range(7812)]
    writer.numbers(users)
    writer.write(_batch((DAY, 3, users[0]), (DAY, 3, users[10])))  # low numbers, in a bucket of 7,812 users
    room = max(HEADROOM_MIN_BITS, 7812 / HEADROOM_SHARE)
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
    redis_url: str, writer: ActivityWriter, keys: KeySchema, redis_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "BITS_CHUNK", 7)
    users = {f"user-{i}" for i in range(120)}
    batch = UserSets()
    for i, user in enumerate(sorted(users)):
        batch.add_active(DAY + timedelta(days=i % 3), i % 24, user, 1)
        batch.add_active(DAY, 23, user, 1)
    writer.write(batch)
    state = bucket_state(redis_client, keys)  # asserts that every counter equals its bitmap's bits
    writer.write(batch)
    ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS).write(batch)  # no memo: every expiry
    assert bucket_state(redis_client, keys) == state
    assert state[index_label("hour", "2031-06-01T23")] == users


def test_a_bitmap_past_its_expiry_on_redis_clock_is_not_written(redis_url: str, keys: KeySchema, redis_client) -> None:
    old = date(2020, 1, 1)  # its retention ended long ago; this writer's clock says otherwise
    writer = ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS, wall=lambda: 0.0)
    writer.write(_batch((old, 1, "alice"), created=((old, "alice"),)))
    kept = (keys.versions(), *(key for b in range(keys.buckets) for key in names_keys(keys, b)))
    left = [key for key in redis_client.scan_iter(match=keys.pattern()) if key not in kept]  # no expiry by design
    assert left == [], "no key without a future expiry"
    assert bucket_state(redis_client, keys) == {}


def test_server_errors_become_store_unavailable(writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    bucket = bucket_of("u", 8)
    redis_client.hset(keys.day_bits(DAY, bucket), "not", "a bitmap")  # WRONGTYPE on SETBIT, inside the script
    with pytest.raises(StoreUnavailable, match="Redis write failed"):
        writer.write(_batch((DAY, 0, "u")))
    redis_client.delete(keys.day_bits(DAY, bucket))
    writer.write(_batch((DAY, 0, "u")))  # the connection stayed in step with its replies
    assert bucket_state(redis_client, keys) == {
        index_label("day", "2031-06-01"): {"u"},
        index_label("hour", "2031-06-01T00"): {"u"},
    }


def test_a_names_key_of_another_type_fails_the_numbering_and_numbers_nobody(
    writer: ActivityWriter, keys: KeySchema, redis_client
) -> None:
    bucket = bucket_of("v", 8)
    redis_client.set(keys.names(bucket), "not a list")  # WRONGTYPE on LLEN, before the HSET
    with pytest.raises(StoreUnavailable, match="Redis write failed"):
        writer.write(_batch((DAY, 0, "v")))
    assert redis_client.hlen(keys.ids(bucket)) == 0  # the script failed before numbering anyone
    assert not redis_client.exists(keys.day_bits(DAY, bucket))
    redis_client.delete(keys.names(bucket))
    writer.write(_batch((DAY, 0, "v")))
    assert redis_client.lrange(keys.names(bucket), 0, -1) == ["v"]
    assert bucket_state(redis_client, keys)[index_label("day", "2031-06-01")] == {"v"}


def test_numbers_of_a_dead_redis_become_store_unavailable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(StoreUnavailable, match="numbering failed"):
        ActivityWriter(dead, KeySchema("x:", "UTC"), SETTINGS).numbers(["u"])
    dead.close()


def test_a_closed_port_becomes_store_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(StoreUnavailable, match="Redis write failed") as caught:
        ActivityWriter(dead, KeySchema("x:", "UTC"), SETTINGS).write(_batch((DAY, 0, "u")))
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    dead.close()


# ------------------------------------------------------------------------------------------------------ names lists


def names_and_hash(client: Any, keys: KeySchema, bucket: int) -> tuple[list[str], list[str]]:
    """A bucket's names list, and its ids hash reversed (element n: the id numbered n)."""
    numbers = {int(n): user for user, n in client.hgetall(keys.ids(bucket)).items()}
    return client.lrange(keys.names(bucket), 0, -1), [numbers[n] for n in range(len(numbers))]


def test_numbering_lists_each_new_id_at_its_number(writer: ActivityWriter, keys: KeySchema, redis_client) -> None:
    users = [f"user-{n}" for n in range(200)]
    writer.write(_batch(*((DAY, n % 24, user) for n, user in enumerate(users[:120]))))
    writer.write(_batch(*((DAY + timedelta(days=1), 0, user) for user in users[60:])))  # known and new users
    numbers = writer.numbers(users)
    for bucket in range(8):
        names, hashed = names_and_hash(redis_client, keys, bucket)
        assert names == hashed
        assert all(numbers[user] == (bucket, n) for n, user in enumerate(names))
    assert sum(redis_client.llen(keys.names(b)) for b in range(8)) == 200
    assert bucket_state(redis_client, keys)[index_label("day", "2031-06-02")] == set(users[60:])


def test_concurrent_writers_keep_every_names_list_aligned(redis_url: str, keys: KeySchema, redis_client) -> None:
    users = [f"racer-{n}" for n in range(2400)]
    ready = threading.Barrier(6)
    failures: list[BaseException] = []

    def write(seed: int) -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            writer = ActivityWriter(client, keys, SETTINGS)
            order = users[seed * 400 :] + users[: seed * 400]  # each starts elsewhere, so they overlap
            ready.wait()
            for start in range(0, len(order), 150):
                writer.write(_batch(*((DAY, seed, user) for user in order[start : start + 150])))
        except BaseException as exc:  # reported below: a thread's exception would otherwise be lost
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    listed = []
    for bucket in range(8):
        names, hashed = names_and_hash(redis_client, keys, bucket)
        assert names == hashed, f"bucket {bucket}"
        listed += names
    assert sorted(listed) == sorted(users)  # each id once, in its own bucket's list
    state = bucket_state(redis_client, keys)  # also: every bit names a user, counters equal bits
    assert state[index_label("day", "2031-06-01")] == set(users)
    assert all(state[index_label("hour", f"2031-06-01T{seed:02d}")] == set(users) for seed in range(6))


def test_a_hash_numbered_before_the_names_list_gets_no_names_from_the_numbering(
    redis_url: str, redis_prefix: str, redis_client
) -> None:
    one = KeySchema(redis_prefix, ZONE, 1)
    redis_client.hset(one.ids(0), mapping={"old-0": 0, "old-1": 1, "old-2": 2})  # as an older version numbered
    writer = ActivityWriter(redis.Redis.from_url(redis_url), one, SETTINGS)
    writer.write(_batch((DAY, 0, "new-3"), (DAY, 0, "old-1")))
    assert writer.numbers(["new-3", "old-1", "new-4"]) == {"new-3": (0, 3), "old-1": (0, 1), "new-4": (0, 4)}
    assert redis_client.hlen(one.ids(0)) == 5
    assert redis_client.llen(one.names(0)) == 0, "a list without numbers 0-2 must not start at number 3"
    # Partly listed (a reindex under way): still nothing appended by the numbering, never a misaligned list.
    redis_client.rpush(one.names(0), "old-0", "old-1")
    writer.numbers(["new-5"])
    assert redis_client.lrange(one.names(0), 0, -1) == ["old-0", "old-1"]
    # Listed up to the hash's end (what reindex does with append_names.lua): the numbering appends again.
    script = redis_client.script_load(APPEND_NAMES.source)
    # Only the scan's id: the ones this version's numbering kept while the list was behind come with it.
    assert redis_client.hgetall(one.unlisted(0)) == {"3": "new-3", "4": "new-4", "5": "new-5"}
    assert redis_client.evalsha(script, 4, *names_keys(one, 0), 2, "old-2") == 6
    assert redis_client.exists(one.unlisted(0)) == 0
    for user in ("new-6", "new-7", "old-0"):
        writer.numbers([user])
    names, hashed = names_and_hash(redis_client, one, 0)
    assert names == hashed == ["old-0", "old-1", "old-2", "new-3", "new-4", "new-5", "new-6", "new-7"]


def test_a_names_list_lost_while_numbering_goes_on_is_never_restarted_mid_way(
    writer: ActivityWriter, keys: KeySchema, redis_client
) -> None:
    users = [f"user-{n}" for n in range(40)]
    writer.numbers(users[:20])
    bucket = bucket_of(users[0], 8)
    redis_client.delete(keys.names(bucket))  # removed by hand: the hash still numbers its users
    numbered = redis_client.hlen(keys.ids(bucket))
    other = ActivityWriter(redis_client, keys, SETTINGS)  # no memo
    other.numbers(users)
    assert redis_client.hlen(keys.ids(bucket)) > numbered  # new users of that bucket were numbered...
    assert redis_client.llen(keys.names(bucket)) == 0  # ...and not listed: no list restarted at the hash's end
    listed = sum(redis_client.llen(keys.names(b)) for b in range(8))
    assert listed == sum(redis_client.hlen(keys.ids(b)) for b in range(8) if b != bucket)
