"""The reader's counts and bitmasks from the index against the real Redis, written by the real writer and
checked against Python sets: per-day, per-hour and new-user counts, unions from the masks, chunking of the
script calls and MGETs, and a Redis that lost its scripts."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import pytest
import redis

from activeusers import store
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.store import ActivityReader, ActivityWriter, Buckets, async_redis_client

DAY = date(2031, 3, 15)
SETTINGS = Settings(retention_days=400, hour_retention_days=400, member_retention_days=45)


def _seed(stack: Any, keys: KeySchema, days: int) -> tuple[dict[date, set[str]], dict[tuple[date, int], set[str]]]:
    rng = random.Random(days)
    per_day: dict[date, set[str]] = {}
    per_hour: dict[tuple[date, int], set[str]] = {}
    buckets = Buckets()
    for offset in range(days):
        day = DAY + timedelta(days=offset)
        if offset % 4 == 3:
            continue  # a day without data
        for _ in range(rng.randrange(1, 60)):
            user, hour = f"u{rng.randrange(200)}", rng.randrange(3)
            buckets.add_active(day, hour, user, 1)
            per_day.setdefault(day, set()).add(user)
            per_hour.setdefault((day, hour), set()).add(user)
        buckets.add_created(day, f"new{offset}", 1)
    client = redis.Redis.from_url(stack.redis_url)
    ActivityWriter(client, keys, SETTINGS).write(buckets)
    client.close()
    return per_day, per_hour


@pytest.mark.parametrize("buckets", [1, 5, 64])
async def test_counts_and_masks_equal_set_unions(stack: Any, redis_prefix: str, buckets: int) -> None:
    keys = KeySchema(redis_prefix, "UTC", buckets)
    per_day, per_hour = _seed(stack, keys, 12)
    days = [DAY + timedelta(days=n) for n in range(-2, 13)]
    hours = [(d, h) for d in days for h in range(4)]
    client = async_redis_client(Settings(redis_url=stack.redis_url))
    try:
        reader = ActivityReader(client, keys)
        assert await reader.day_counts(days) == {d: len(per_day.get(d, ())) for d in days}
        assert await reader.hour_counts(hours) == {h: len(per_hour.get(h, ())) for h in hours}
        assert await reader.new_user_counts(days) == {d: int(d in per_day) for d in days}
        assert await reader.cardinalities(days) == {d: len(per_day.get(d, ())) for d in days}
        masks = await reader.day_masks(days)
        for start in range(len(days)):
            for end in range(start, len(days)):
                union = 0
                for mask in masks[start : end + 1]:
                    union |= mask
                want = set().union(*(per_day.get(d, set()) for d in days[start : end + 1]))
                assert union.bit_count() == len(want)
        hour_masks = await reader.hour_masks(hours)
        assert [m.bit_count() for m in hour_masks] == [len(per_hour.get(h, ())) for h in hours]
        assert (hour_masks[8] | hour_masks[9]).bit_count() == len(
            per_hour.get(hours[8], set()) | per_hour.get(hours[9], set())
        )
        assert await reader.day_counts([]) == {} and await reader.day_masks([]) == []
    finally:
        await client.aclose()


async def test_chunked_calls_and_a_script_flush(
    stack: Any, redis_prefix: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeySchema(redis_prefix, "UTC", 3)
    per_day, _ = _seed(stack, keys, 20)
    monkeypatch.setattr(store, "FETCH_CHUNK", 4)
    days = [DAY + timedelta(days=n) for n in range(20)]
    redis_client.script_flush()  # a Redis that never saw the script: the reader loads it and asks again
    client = async_redis_client(Settings(redis_url=stack.redis_url))
    try:
        reader = ActivityReader(client, keys)
        assert await reader.day_counts(days) == {d: len(per_day.get(d, ())) for d in days}
        assert [m.bit_count() for m in await reader.day_masks(days)] == [len(per_day.get(d, ())) for d in days]
    finally:
        await client.aclose()
