"""``active-users reindex`` against the real Redis: the layout before the index (day, hour and new-user sets)
becomes the index, equal to the sets it was built from; old hour and new-user sets are deleted, day sets get
the member retention; a second run changes nothing; a consumer writing meanwhile agrees on the numbers."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from streams import bucket_state, consumer_env, index_label

from activeusers.days import day_expiry_s
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.store import ActivityWriter, Buckets
from consumer.reindex import reindex

TODAY = datetime.now(UTC).date()


def _old_layout(client: redis.Redis, keys: KeySchema) -> dict[str, set[str]]:
    """Sets as the service wrote them before the index, and what the index must hold afterwards."""
    recent, older, expired = TODAY - timedelta(days=2), TODAY - timedelta(days=60), TODAY - timedelta(days=500)
    days = {recent: {f"u{n}" for n in range(120)}, older: {"u1", "old"}, expired: {"gone"}}
    hours = {(recent, 9): {"u1", "u2"}, (recent, 23): {"hour-only"}, (older, 0): {"old"}}
    created = {recent: {"u5", "u6"}, older: {"old"}}
    for day, users in days.items():
        client.sadd(keys.day(day), *users)
    for (day, hour), users in hours.items():
        client.sadd(keys.old_hour(day, hour), *users)
    for day, users in created.items():
        client.sadd(keys.old_new_users(day), *users)
    client.sadd(keys.prefix + "day:Europe/Paris:" + recent.isoformat(), "another zone")
    return {
        keys.day(recent): days[recent],  # the older day set is past the member retention: deleted once indexed
        index_label("day", recent.isoformat()): days[recent],
        index_label("day", older.isoformat()): days[older],
        index_label("hour", f"{recent.isoformat()}T09"): hours[(recent, 9)],
        index_label("hour", f"{recent.isoformat()}T23"): hours[(recent, 23)],
        index_label("new", recent.isoformat()): created[recent],
        index_label("new", older.isoformat()): created[older],
    }  # the hour of the older day is past HOUR_RETENTION_DAYS (30 here): migrated into nothing, deleted


def test_reindex_builds_the_index_from_the_sets(stack: Any, redis_client, redis_prefix: str) -> None:
    settings = Settings(
        redis_url=stack.redis_url, redis_key_prefix=redis_prefix, hour_retention_days=30, member_retention_days=45
    )
    keys = KeySchema.of(settings)
    expected = _old_layout(redis_client, keys)
    client = redis.Redis.from_url(stack.redis_url)
    out = io.StringIO()
    result = reindex(client, ActivityWriter(client, keys, settings), keys, settings, out)
    assert (result.day_sets, result.hour_sets, result.new_user_sets) == (3, 3, 2)
    assert result.ids == 120 + 2 + 1 + 2 + 1 + 1 + 2 + 1
    assert f"{result.ids}/{result.ids} ids" in out.getvalue()
    assert bucket_state(redis_client, keys) == expected
    assert not list(redis_client.scan_iter(match=keys.old_hour_pattern()))
    assert not list(redis_client.scan_iter(match=keys.old_new_users_pattern()))
    recent = TODAY - timedelta(days=2)
    assert redis_client.expiretime(keys.day(recent)) == day_expiry_s(recent, settings.zone, 45)
    assert redis_client.exists(redis_prefix + "day:Europe/Paris:" + recent.isoformat())  # not this zone's

    numbering = {b: redis_client.hgetall(keys.ids(b)) for b in range(keys.buckets)}
    again = reindex(client, ActivityWriter(client, keys, settings), keys, settings, io.StringIO())
    assert (again.day_sets, again.hour_sets, again.new_user_sets) == (1, 0, 0)
    assert bucket_state(redis_client, keys) == expected
    assert {b: redis_client.hgetall(keys.ids(b)) for b in range(keys.buckets)} == numbering
    client.close()


def test_reindex_beside_a_writing_consumer_agrees_on_numbers(stack: Any, redis_client, redis_prefix: str) -> None:
    settings = Settings(redis_url=stack.redis_url, redis_key_prefix=redis_prefix, user_buckets=4)
    keys = KeySchema.of(settings)
    users = {f"racer-{n}" for n in range(4000)}
    redis_client.sadd(keys.day(TODAY), *users)
    stop = threading.Event()

    def consume() -> None:  # what a consumer does meanwhile: new events of the same users, today
        client = redis.Redis.from_url(stack.redis_url)
        writer = ActivityWriter(client, keys, settings)
        ordered = sorted(users, reverse=True)
        for start in range(0, len(ordered), 200):
            batch = Buckets()
            for user in ordered[start : start + 200]:
                batch.add_active(TODAY, 3, user, 1)
            writer.write(batch)
            if stop.is_set():
                break
        client.close()

    thread = threading.Thread(target=consume)
    thread.start()
    client = redis.Redis.from_url(stack.redis_url)
    reindex(client, ActivityWriter(client, keys, settings), keys, settings, io.StringIO())
    thread.join()
    client.close()
    state = bucket_state(redis_client, keys)  # asserts dense numbers and bits that name numbered users
    assert state[index_label("day", TODAY.isoformat())] == users
    assert sum(redis_client.hlen(keys.ids(b)) for b in range(4)) == len(users)


def test_the_command_reports_on_stderr(stack: Any, redis_client, redis_prefix: str) -> None:
    keys = KeySchema(redis_prefix, "UTC")
    redis_client.sadd(keys.day(TODAY), "a", "b")
    redis_client.sadd(keys.old_hour(TODAY, 1), "a")
    env = consumer_env(stack, "unused", redis_prefix, "unused")
    done = subprocess.run(
        [sys.executable, "-m", "activeusers.cli", "reindex"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "3/3 ids" in done.stderr
    assert "reindex complete: 3 ids from 1 day sets, 1 hour sets and 0 new-user sets" in done.stderr
    assert bucket_state(redis_client, keys) == {
        keys.day(TODAY): {"a", "b"},
        index_label("day", TODAY.isoformat()): {"a", "b"},
        index_label("hour", f"{TODAY.isoformat()}T01"): {"a"},
    }
