"""The reader's counting reads against the real Redis: cardinalities by script (loaded again after a script
flush), and union sizes of hour buckets by inclusion-exclusion in Redis, checked against Python set unions."""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta

import redis

from activeusers.keys import KeySchema
from activeusers.redisconn import async_redis_client
from activeusers.settings import Settings
from activeusers.store import COUNT_CHUNK, ActivityReader

DAY = date(2026, 3, 15)


async def test_counts_by_kind_and_after_a_script_flush(stack, redis_client: redis.Redis, redis_prefix: str) -> None:
    keys = KeySchema(redis_prefix, "UTC")
    redis_client.sadd(keys.day(DAY), "a", "b")
    redis_client.sadd(keys.hour(DAY, 7), "a")
    redis_client.sadd(keys.new_users(DAY), "a", "b", "c")
    client = async_redis_client(Settings(redis_url=stack.redis_url))
    try:
        reader = ActivityReader(client, keys)
        redis_client.script_flush()  # a Redis that never saw the script: the reader loads it and asks again
        assert await reader.cardinalities([DAY, date(2026, 3, 14)]) == {DAY: 2, date(2026, 3, 14): 0}
        assert await reader.hour_counts([(DAY, 7), (DAY, 8)]) == {(DAY, 7): 1, (DAY, 8): 0}
        assert await reader.new_user_counts([DAY]) == {DAY: 3}
        assert await reader.cardinalities([]) == {}
        # More keys than one script call takes: chunks, in order.
        hours = [(date(2026, 1, 1) + timedelta(days=n // 24), n % 24) for n in range(COUNT_CHUNK + 30)]
        redis_client.sadd(keys.hour(*hours[-1]), "z")
        counts = await reader.hour_counts(hours)
        assert counts[hours[-1]] == 1 and counts[(DAY, 7)] == 1 and sum(counts.values()) == 2
    finally:
        await client.aclose()


async def test_union_counts_equal_set_unions(stack, redis_client: redis.Redis, redis_prefix: str) -> None:
    keys = KeySchema(redis_prefix, "UTC")
    rng = random.Random(7)
    sets: dict[tuple[date, int], set[str]] = {}
    for hour in range(6):
        sets[(DAY, hour)] = {f"u{rng.randrange(40)}" for _ in range(rng.randrange(0, 25))}
        if sets[(DAY, hour)]:
            redis_client.sadd(keys.hour(DAY, hour), *sets[(DAY, hour)])
    groups = [list(g) for size in range(0, 5) for g in itertools.combinations(sorted(sets), size)][:60]
    client = async_redis_client(Settings(redis_url=stack.redis_url))
    try:
        got = await ActivityReader(client, keys).hour_union_counts(groups)
    finally:
        await client.aclose()
    assert got == [len(set().union(*(sets[b] for b in group))) for group in groups]
    assert max(got) > 0
