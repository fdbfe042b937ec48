"""Counts, masks and ids from the index through the app's cache, against the real Redis, written by the real writer
and checked against Python sets: per-day, per-hour and new-user counts, unions from the masks and in Redis, the
ids behind the day bitmaps, chunked MGETs and LRANGEs, and what a later write, a new layout and a Redis that lost
everything do to the cached values."""

from __future__ import annotations

import random
import struct
from datetime import date, timedelta
from typing import Any

import pytest
import redis

from activeusers import reader as reader_module
from activeusers.connections import async_redis_client
from activeusers.keys import DAY_SLOT, SLOTS, KeySchema, bucket_of
from activeusers.reader import ActivityReader
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from api import masks as mask_module
from api.daycache import DayCache
from api.indexreads import IndexReads

DAY = date(2031, 3, 15)
SETTINGS = Settings(retention_days=400, hour_retention_days=400)


Oracle = tuple[dict[date, set[str]], dict[tuple[date, int], set[str]]]


def _seed(redis_url: str, keys: KeySchema, days: int, users: int = 200, seed: int = 0) -> Oracle:
    rng = random.Random(days + seed)
    per_day: dict[date, set[str]] = {}
    per_hour: dict[tuple[date, int], set[str]] = {}
    buckets = UserSets()
    for offset in range(days):
        day = DAY + timedelta(days=offset)
        if offset % 4 == 3:
            continue  # a day without data
        for _ in range(rng.randrange(1, 60)):
            user, hour = f"u{rng.randrange(users)}", rng.randrange(3)
            buckets.add_active(day, hour, user, 1)
            per_day.setdefault(day, set()).add(user)
            per_hour.setdefault((day, hour), set()).add(user)
        buckets.add_created(day, f"new{offset}", 1)
    client = redis.Redis.from_url(redis_url)
    ActivityWriter(client, keys, SETTINGS).write(buckets)
    client.close()
    return per_day, per_hour


async def _check(reader: ActivityReader, cache: DayCache, oracle: Oracle, days: list[date], ids: bool = True) -> None:
    """Every count, mask and union through ``cache``, and (``ids``) the ids behind the days' bits, which no cache
    of the reader's keeps: listing them fetches the day bitmaps again."""
    per_day, per_hour = oracle
    hours = [(d, h) for d in days for h in range(4)]
    assert await IndexReads(reader, cache).day_counts(days, await reader.day_versions(days)) == {
        d: len(per_day.get(d, ())) for d in days
    }
    assert await IndexReads(reader, cache).hour_counts(hours, await reader.day_versions(days)) == {
        h: len(per_hour.get(h, ())) for h in hours
    }
    masks = await IndexReads(reader, cache).day_masks(days, await reader.day_versions(days))
    for start in range(len(days)):
        for end in range(start, len(days)):
            union = 0
            for mask in masks[start : end + 1]:
                union |= mask
            want = set().union(*(per_day.get(d, set()) for d in days[start : end + 1]))
            assert union.bit_count() == len(want)
    # Unions in Redis: groups of any size (one empty), overlapping, of days with and without data.
    day_groups = [days, days[2:5], [], days[-1:], days[::3]]
    want = [len(set().union(*(per_day.get(d, set()) for d in group))) for group in day_groups]
    assert await IndexReads(reader, cache).day_union_counts(day_groups, await reader.day_versions(days)) == want
    hour_groups = [hours[8:10], hours, hours[1::4], []]
    want = [len(set().union(*(per_hour.get(h, set()) for h in group))) for group in hour_groups]
    assert await IndexReads(reader, cache).hour_union_counts(hour_groups, await reader.day_versions(days)) == want
    if not ids:
        return
    # The ids behind each day's bits, each once (the buckets partition the users).
    listed = await reader.active_ids(days)
    assert [sorted(ids) for ids in listed] == [sorted(per_day.get(d, ())) for d in days]
    assert all(len(ids) == len(set(ids)) for ids in listed)


@pytest.mark.parametrize("buckets", [1, 5, 16])
@pytest.mark.parametrize("cache_bytes", [0, 1 << 26])
async def test_counts_and_masks_equal_set_unions(
    redis_url: str, redis_prefix: str, buckets: int, cache_bytes: int
) -> None:
    keys = KeySchema(redis_prefix, "UTC", buckets)
    oracle = _seed(redis_url, keys, 12)
    days = [DAY + timedelta(days=n) for n in range(-2, 13)]
    client = async_redis_client(Settings(redis_url=redis_url))
    cache = DayCache(cache_bytes, 60)
    try:
        reader = ActivityReader(client, keys)
        for _ in range(2):  # the second time from the cache, when there is one
            await _check(reader, cache, oracle, days)
        assert bool(len(cache)) == bool(cache_bytes)
        assert await IndexReads(reader, cache).new_user_counts(days, await reader.day_versions(days)) == {
            d: int(d in oracle[0]) for d in days
        }
        assert await IndexReads(reader, cache).day_counts([], {}) == {}
        assert await IndexReads(reader, cache).hour_union_counts([[]], {}) == [0]
    finally:
        await client.aclose()


class CountingReader(ActivityReader):
    """The real reader, counting the bitmaps, counters and unions it reads (what the cache saves)."""

    fetched = 0

    async def day_union_counts(self, groups: Any, kept: Any = (), kind: Any = "day") -> list[int]:
        self.fetched += len(groups)
        return await super().day_union_counts(groups, kept, kind)

    async def hour_union_counts(self, groups: Any) -> list[int]:
        self.fetched += len(groups)
        return await super().hour_union_counts(groups)

    async def day_bitmaps(self, days: Any, kind: Any = "day") -> list[list[bytes]]:
        self.fetched += len(days)
        return await super().day_bitmaps(days, kind)

    async def day_counters(self, days: Any) -> list[tuple[int, ...]]:
        self.fetched += len(days)
        return await super().day_counters(days)


@pytest.mark.parametrize("span_step", [1, 256])
async def test_a_later_write_is_read_again_and_nothing_else(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch, span_step: int
) -> None:
    """A cached day is served until a write gives it a new version; then it alone is read again, unless its
    new users outgrew a bucket's span (``span_step`` 1: every new user does), when every mask is joined again."""
    monkeypatch.setattr(mask_module, "SPAN_STEP", span_step)
    keys = KeySchema(redis_prefix, "UTC", 4)
    per_day, per_hour = _seed(redis_url, keys, 6)
    days = [DAY + timedelta(days=n) for n in range(6)]
    client = async_redis_client(Settings(redis_url=redis_url))
    cache = DayCache(1 << 26, 60)
    try:
        reader = CountingReader(client, keys)
        await _check(reader, cache, (per_day, per_hour), days, ids=False)
        reader.fetched = 0
        await _check(reader, cache, (per_day, per_hour), days, ids=False)
        assert reader.fetched == 0
        versions = await reader.day_versions(days)
        later = UserSets()
        # A known user and 400 new ones on the third day: more than the writer's headroom in every bucket's bitmap.
        for user in ("u1", *(f"late-{n}" for n in range(400))):
            later.add_active(days[2], 1, user, 1)
            per_day.setdefault(days[2], set()).add(user)
            per_hour.setdefault((days[2], 1), set()).add(user)
        sync = redis.Redis.from_url(redis_url)
        ActivityWriter(sync, keys, SETTINGS).write(later)
        sync.close()
        after = await reader.day_versions(days)
        assert [d for d in days if after[d] != versions[d]] == [days[2]]
        await _check(reader, cache, (per_day, per_hour), days, ids=False)
        # The changed day's counters once (day_counts; hour_counts finds them cached), its bitmaps once (with a new
        # layout every day's bitmaps again), and both kinds of unions again (each involves the changed day).
        assert reader.fetched == (2 + len(days) if span_step == 1 else 2) + 5 + 4
    finally:
        await client.aclose()


async def test_a_redis_that_lost_everything_is_not_served_from_the_cache(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    keys = KeySchema(redis_prefix, "UTC", 2)
    oracle = _seed(redis_url, keys, 4)
    days = [DAY + timedelta(days=n) for n in range(4)]
    client = async_redis_client(Settings(redis_url=redis_url))
    cache = DayCache(1 << 26, 60)
    try:
        reader = ActivityReader(client, keys)
        await _check(reader, cache, oracle, days)
        for key in redis_client.scan_iter(match=keys.pattern()):
            redis_client.delete(key)
        await _check(reader, cache, ({}, {}), days)
        other = _seed(redis_url, keys, 4, users=50, seed=1)  # new data, new versions
        await _check(reader, cache, other, days, ids=False)
        # A new process lists the ids of the new numbering (the ids of the reader above: the next test).
        await _check(ActivityReader(client, keys), DayCache(0, 60), other, days)
    finally:
        await client.aclose()


async def test_ids_after_a_redis_that_lost_everything_are_the_new_ones(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    keys = KeySchema(redis_prefix, "UTC", 2)
    days = [DAY + timedelta(days=n) for n in range(4)]
    client = async_redis_client(Settings(redis_url=redis_url))
    try:
        reader = ActivityReader(client, keys)
        first, _ = _seed(redis_url, keys, 4)
        assert [sorted(ids) for ids in await reader.active_ids(days)] == [sorted(first.get(d, ())) for d in days]
        for key in redis_client.scan_iter(match=keys.pattern()):
            redis_client.delete(key)
        other, _ = _seed(redis_url, keys, 4, users=50, seed=1)  # the same ids hashes and lists, numbered anew
        assert [sorted(ids) for ids in await reader.active_ids(days)] == [sorted(other.get(d, ())) for d in days]
    finally:
        await client.aclose()


async def test_chunked_fetches_and_a_script_flush(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeySchema(redis_prefix, "UTC", 3)
    oracle = _seed(redis_url, keys, 20)
    monkeypatch.setattr(reader_module, "FETCH_CHUNK", 4)
    monkeypatch.setattr(reader_module, "NAMES_CHUNK", 7)
    days = [DAY + timedelta(days=n) for n in range(20)]
    redis_client.script_flush()  # a Redis that never saw the script: the reader loads it and asks again
    client = async_redis_client(Settings(redis_url=redis_url))
    try:
        await _check(ActivityReader(client, keys), DayCache(0, 60), oracle, days)
    finally:
        await client.aclose()


async def test_counters_summed_by_one_process_serve_another(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """A day's summed counters are kept in Redis under the day's version: another process (another cache) takes
    them (here altered, to tell them from summed ones) instead of reading every bucket, until a write."""
    keys = KeySchema(redis_prefix, "UTC", 4)
    per_day, _ = _seed(redis_url, keys, 3)
    days = [DAY + timedelta(days=n) for n in range(3)]
    client = async_redis_client(Settings(redis_url=redis_url))
    try:
        reader = CountingReader(client, keys)
        assert await IndexReads(reader, DayCache(1 << 20, 60)).day_counts(days, await reader.day_versions(days)) == {
            d: len(per_day[d]) for d in days
        }
        field = keys.derived_field("counters", DAY)
        version, packed = redis_client.hget(keys.derived(), field).split(" ")
        counters = struct.unpack(f">{SLOTS}I", bytes.fromhex(packed))
        assert counters[DAY_SLOT] == len(per_day[DAY]) and version == (await reader.day_versions([DAY]))[DAY]
        redis_client.hset(keys.derived(), field, f"{version} {struct.pack(f'>{SLOTS}I', *[7] * SLOTS).hex()}")
        reader.fetched = 0
        assert (await IndexReads(reader, DayCache(1 << 20, 60)).day_counts(days, await reader.day_versions(days)))[
            DAY
        ] == 7
        assert reader.fetched == 0  # every day's counters from Redis' shared copy
        later = UserSets()
        later.add_active(DAY, 1, "late", 1)
        sync = redis.Redis.from_url(redis_url)
        ActivityWriter(sync, keys, SETTINGS).write(later)
        sync.close()
        assert (await IndexReads(reader, DayCache(1 << 20, 60)).day_counts(days, await reader.day_versions(days)))[
            DAY
        ] == len(per_day[DAY] | {"late"})
        assert reader.fetched == 1
    finally:
        await client.aclose()


async def test_kept_unions_are_made_once_and_again_when_lost_or_changed(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """A union of consecutive days is read as the union of all but its newest day, kept in Redis, and the newest
    day: made once (one BITOP per bucket to make it, one to OR it with the newest day), made again when a kept day
    gets a new version or either of its two keys is gone (evicted), and right when the kept days have no data."""
    keys = KeySchema(redis_prefix, "UTC", 2)
    per_day, _ = _seed(redis_url, keys, 8)
    days = [DAY + timedelta(days=n) for n in range(8)]
    empty = [DAY - timedelta(days=n) for n in range(5, 0, -1)] + days[:1]  # no data but on the last day
    groups = [days, empty]
    client = async_redis_client(Settings(redis_url=redis_url))

    async def counted() -> tuple[list[int], int]:
        redis_client.config_resetstat()
        reader = ActivityReader(client, keys)
        found = await IndexReads(reader, DayCache(0, 60)).day_union_counts(
            groups, await reader.day_versions(empty + days)
        )
        return found, redis_client.info("commandstats")["cmdstat_bitop"]["calls"]

    def want() -> list[int]:
        return [len(set().union(*(per_day.get(d, set()) for d in group))) for group in groups]

    try:
        assert await counted() == (want(), 2 * 2 + 2)  # days: made and ORed per bucket; empty: made (empty)
        assert await counted() == (want(), 2)  # kept: only the ORs with the newest days (days[0] is counted)
        union = keys.tag(1) + keys.union_part(days[0], days[-2])
        label = keys.tag(0) + keys.union_label_part(days[0], days[-2])
        assert redis_client.exists(union) and redis_client.get(label).endswith(" made")
        assert redis_client.get(keys.tag(0) + keys.union_label_part(empty[0], empty[-2])).endswith(" empty")
        redis_client.delete(union)  # evicted: bucket 1 makes its union again
        assert await counted() == (want(), 2 + 1)
        redis_client.delete(label)
        assert await counted() == (want(), 2 + 1)
        late = UserSets()
        late.add_active(days[3], 5, "late-user", 1)
        late.add_active(empty[2], 5, "late-user", 1)
        per_day.setdefault(days[3], set()).add("late-user")
        per_day.setdefault(empty[2], set()).add("late-user")
        sync = redis.Redis.from_url(redis_url)
        ActivityWriter(sync, keys, SETTINGS).write(late)
        sync.close()
        # Both kept unions made again in both buckets and ORed with the newest day, but the empty days' union in the
        # bucket without the late user: still empty, its newest day counted alone.
        assert await counted() == (want(), 2 * 2 + 2 + 1)
    finally:
        await client.aclose()


async def test_ids_after_a_redis_that_lost_everything_and_numbered_the_same_users_in_another_order(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """A replay after the loss numbers the same users again, in another order (partitions are consumed in any
    order): the ids are the new numbering's, also where the last id a process held keeps its number."""
    keys = KeySchema(redis_prefix, "UTC", 2)
    first, second, third = [user for user in (f"p{n}" for n in range(100)) if bucket_of(user, 2) == 0][:3]

    def write(day: date, *users: str) -> None:
        sync = redis.Redis.from_url(redis_url)
        for user in users:  # one write each: numbered in this order
            batch = UserSets()
            batch.add_active(day, 1, user, 1)
            ActivityWriter(sync, keys, SETTINGS).write(batch)
        sync.close()

    client = async_redis_client(Settings(redis_url=redis_url))
    try:
        reader = ActivityReader(client, keys)
        write(DAY, first, second, third)
        assert await reader.active_ids([DAY]) == [[first, second, third]]
        for key in redis_client.scan_iter(match=keys.pattern()):
            redis_client.delete(key)
        write(DAY - timedelta(days=1), second)  # number 0 now
        write(DAY, first, third)  # numbers 1 and 2: the third keeps its number
        assert sorted((await reader.active_ids([DAY]))[0]) == sorted([first, third])
        assert await ActivityReader(client, keys).active_ids([DAY]) == [[first, third]]
    finally:
        await client.aclose()
