"""First active days (``activeusers/lua/first_days.lua`` through :class:`ActivityWriter`), against the real Redis
and the real Redis Cluster: a user's first day is its earliest day ever written, whatever the order the days come
in; a late event for an earlier day moves the user's bit to that day's first-day bitmap and gives the day it left a
new index version; replays change nothing; an expired first-day bitmap is not recreated; the script's day names
are the ones :mod:`activeusers.keys` builds."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import redis
import redis.cluster

from activeusers import writer as writer_module
from activeusers.keys import KeySchema, bucket_of, day_number, day_of_number
from activeusers.scripts import FIRST_DAYS
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter

ZONE = "Europe/Berlin"
SETTINGS = Settings(activity_timezone=ZONE, retention_days=400, hour_retention_days=90)
DAY = date.today() - timedelta(days=30)


@pytest.fixture
def keys(redis_prefix: str) -> KeySchema:
    return KeySchema(redis_prefix, ZONE, 4)


@pytest.fixture
def writer(redis_url: str, keys: KeySchema) -> Iterator[ActivityWriter]:
    client = redis.Redis.from_url(redis_url)
    yield ActivityWriter(client, keys, SETTINGS)
    client.close()


def batch(*active: tuple[date, str]) -> UserSets:
    sets = UserSets()
    for day, user in active:
        sets.add_active(day, 12, user, 1)
    return sets


def first_day_of(client: Any, keys: KeySchema, writer: ActivityWriter, user: str) -> date | None:
    bucket, number = writer.numbers([user])[user]
    (found,) = client.bitfield(keys.first_days(bucket)).get("u16", f"#{number}").execute()
    return day_of_number(found) if found else None


def first_users(client: Any, keys: KeySchema, writer: ActivityWriter, day: date, users: list[str]) -> set[str]:
    """The users of ``users`` whose bit is set in ``day``'s first-day bitmap."""
    numbers = writer.numbers(users)
    return {
        user for user, (bucket, number) in numbers.items() if client.getbit(keys.first_bits(day, bucket), number) == 1
    }


def test_day_numbers_round_trip_and_fit_u16() -> None:
    assert day_number(date(1970, 1, 1)) == 1
    assert day_of_number(1) == date(1970, 1, 1)
    assert day_number(date(2149, 6, 5)) == 65_535
    for day in (date(2000, 2, 29), date(2026, 12, 31), date(2027, 1, 1)):
        assert day_of_number(day_number(day)) == day


def test_the_scripts_day_names_are_the_iso_dates(redis_client: redis.Redis, redis_prefix: str) -> None:
    # A user recorded on each day is moved to 1970-01-01: the script clears its bit in the bitmap it names.
    keys = KeySchema(redis_prefix, "UTC", 1)
    start = keys.tag(0) + keys.first_part_start()
    for day in (date(1999, 12, 31), date(2000, 2, 29), date(2024, 3, 1), date(2100, 3, 1), date(2149, 1, 1)):
        redis_client.delete(keys.first_days(0))
        redis_client.bitfield(keys.first_days(0)).set("u16", "#0", day_number(day)).execute()
        redis_client.setbit(keys.first_bits(day, 0), 0, 1)
        redis_client.script_load(FIRST_DAYS.source)
        moved = redis_client.evalsha(
            FIRST_DAYS.sha,
            4,
            keys.first_days(0),
            keys.first_bits(date(1970, 1, 1), 0),
            keys.ids(0),
            keys.forgotten(0),
            1,
            0,
            start,
            "0",
        )
        assert moved == [day_number(day)]
        assert redis_client.getbit(keys.first_bits(day, 0), 0) == 0


def test_a_first_day_is_the_earliest_day_whatever_the_order(
    writer: ActivityWriter, keys: KeySchema, redis_client: redis.Redis
) -> None:
    rng = random.Random(7)
    users = [f"user-{i}" for i in range(60)]
    days = {user: [DAY + timedelta(days=rng.randrange(20)) for _ in range(4)] for user in users}
    events = [(day, user) for user, found in days.items() for day in found]
    rng.shuffle(events)
    for start in range(0, len(events), 17):  # batches in arrival order, later days often before earlier ones
        writer.write(batch(*events[start : start + 17]))
    for user in users:
        assert first_day_of(redis_client, keys, writer, user) == min(days[user])
    for offset in range(20):
        day = DAY + timedelta(days=offset)
        assert first_users(redis_client, keys, writer, day, users) == {u for u in users if min(days[u]) == day}
    before = {key: redis_client.dump(key) for key in redis_client.scan_iter(keys.pattern())}
    writer.write(batch(*events))  # a replay of everything
    assert {key: redis_client.dump(key) for key in redis_client.scan_iter(keys.pattern())}.keys() == before.keys()
    for user in users:
        assert first_day_of(redis_client, keys, writer, user) == min(days[user])


def test_an_earlier_day_arriving_late_moves_the_bit_and_the_left_days_version(
    writer: ActivityWriter, keys: KeySchema, redis_client: redis.Redis
) -> None:
    later, earlier = DAY + timedelta(days=5), DAY
    writer.write(batch((later, "alice"), (later, "bob")))
    version = redis_client.hget(keys.versions(), later.isoformat())
    writer.write(batch((earlier, "alice")))
    assert first_day_of(redis_client, keys, writer, "alice") == earlier
    assert first_users(redis_client, keys, writer, later, ["alice", "bob"]) == {"bob"}
    assert first_users(redis_client, keys, writer, earlier, ["alice", "bob"]) == {"alice"}
    assert redis_client.hget(keys.versions(), later.isoformat()) != version
    version = redis_client.hget(keys.versions(), later.isoformat())
    writer.write(batch((later, "alice"), (DAY + timedelta(days=9), "alice")))  # later days change nothing
    assert first_day_of(redis_client, keys, writer, "alice") == earlier
    assert first_users(redis_client, keys, writer, later, ["alice"]) == set()


def test_a_call_of_as_many_users_as_the_writer_sends_at_once(redis_url: str, redis_prefix: str, redis_client) -> None:
    keys = KeySchema(redis_prefix, ZONE, 1)  # one bucket: a day's users in calls of BITS_CHUNK
    writer = ActivityWriter(redis.Redis.from_url(redis_url), keys, SETTINGS)
    users = [f"many-{i}" for i in range(writer_module.BITS_CHUNK + 500)]
    writer.write(batch(*((DAY + timedelta(days=2), user) for user in users)))
    writer.write(batch(*((DAY, user) for user in users)))  # every one moved in the same calls
    assert first_users(redis_client, keys, writer, DAY, users) == set(users)
    assert first_users(redis_client, keys, writer, DAY + timedelta(days=2), users) == set()
    assert {first_day_of(redis_client, keys, writer, user) for user in users[::97]} == {DAY}


def test_an_expired_first_day_bitmap_is_not_made_again(
    writer: ActivityWriter, keys: KeySchema, redis_client: redis.Redis
) -> None:
    later = DAY + timedelta(days=3)
    writer.write(batch((later, "carol")))
    bucket = bucket_of("carol", keys.buckets)
    redis_client.delete(keys.first_bits(later, bucket))  # as if expired
    writer.write(batch((DAY, "carol")))
    assert not redis_client.exists(keys.first_bits(later, bucket))
    assert first_day_of(redis_client, keys, writer, "carol") == DAY
    assert redis_client.ttl(keys.first_bits(DAY, bucket)) > 0
    assert redis_client.ttl(keys.first_days(bucket)) == -1  # kept as long as the numbering


def test_first_days_on_the_cluster(cluster_client: redis.cluster.RedisCluster, redis_cluster: str) -> None:
    keys = KeySchema(f"t-first-{random.randrange(1 << 30):x}:", ZONE, 8)
    client = redis.cluster.RedisCluster.from_url(redis_cluster)
    writer = ActivityWriter(client, keys, SETTINGS)
    try:
        users = [f"member-{i}" for i in range(40)]
        writer.write(batch(*((DAY + timedelta(days=4), user) for user in users)))
        writer.write(batch(*((DAY + timedelta(days=i % 3), user) for i, user in enumerate(users))))
        for i, user in enumerate(users):
            assert first_day_of(cluster_client, keys, writer, user) == DAY + timedelta(days=i % 3)
        assert first_users(cluster_client, keys, writer, DAY + timedelta(days=4), users) == set()
    finally:
        for node in cluster_client.get_primaries():
            for key in node.redis_connection.scan_iter(keys.pattern()):
                node.redis_connection.delete(key)
        client.close()
