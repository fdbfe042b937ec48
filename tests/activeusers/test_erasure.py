"""Forgetting users (:mod:`activeusers.erasure`) against the real Redis, single and cluster: every bit of the
users gone from every retained bitmap with the counters equal to the bit counts, the touched days given new
versions, the ids out of the ids hash and the names lists (numbers never given again), and the tombstone that
every writer meets: a writer remembering the number, a new writer (a replay), then ``--restore`` and a new event
counted from then on only."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
import redis

from activeusers.days import day_of
from activeusers.erasure import Erasure, digests, forget_blocking, restore_blocking
from activeusers.keys import KeySchema, bucket_of, day_number
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from tests.support.indexstate import bucket_state
from tests.support.oracle import index_label

pytestmark = pytest.mark.integration

ZONE = "Europe/Berlin"
BUCKETS = 4


def _settings(prefix: str) -> Settings:
    return Settings(
        activity_timezone=ZONE,
        redis_key_prefix=prefix,
        user_buckets=BUCKETS,
        retention_days=400,
        hour_retention_days=90,
    )


def _today() -> date:
    return day_of(int(time.time() * 1000), _settings("x:").zone)


def _batch(active: dict[str, list[tuple[int, int]]], created: dict[str, int] | None = None) -> UserSets:
    """Users active on (days ago, hour) and created days ago."""
    sets, today = UserSets(), _today()
    for user, when in active.items():
        for ago, hour in when:
            sets.add_active(today - timedelta(days=ago), hour, user, 1)
    for user, ago in (created or {}).items():
        sets.add_created(today - timedelta(days=ago), user, 1)
    return sets


# alice: today, 10 days ago (hours kept), 200 days ago (past hour retention: day bit only); created 200 days ago.
ACTIVE = {
    "alice": [(0, 9), (10, 23), (200, 4)],
    "bob": [(0, 9), (10, 1)],
    "carol": [(200, 4), (0, 0)],
}
CREATED = {"alice": 200, "dave": 3}


def _first_day(client: Any, keys: KeySchema, bucket: int, number: int) -> int:
    found: int = client.bitfield(keys.first_days(bucket)).get("u16", f"#{number}").execute()[0]
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _without(state: dict[str, set[str]], *users: str) -> dict[str, set[str]]:
    kept = {label: ids - set(users) for label, ids in state.items()}
    return {label: ids for label, ids in kept.items() if ids}


@pytest.fixture(params=["single", "cluster"])
def target(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Settings]]:
    if request.param == "single":
        client, prefix = request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix")
    else:
        client, prefix = request.getfixturevalue("cluster_client"), request.getfixturevalue("cluster_prefix")
    yield client, _settings(prefix)


def test_forgetting_clears_every_bit_keeps_counters_and_bumps_versions(
    target: tuple[Any, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    client, settings = target
    keys = KeySchema.of(settings)
    writer = ActivityWriter.of(client, settings)
    writer.write(_batch(ACTIVE, CREATED))
    before = bucket_state(client, keys)
    (bucket, number), first = writer.numbers(["alice"])["alice"], _today() - timedelta(days=200)
    assert _first_day(client, keys, bucket, number) == day_number(first) and client.getbit(
        keys.first_bits(first, bucket), number
    )
    versions = {_text(k): v for k, v in client.hgetall(keys.versions()).items()}
    with caplog.at_level(logging.INFO, logger="activeusers.erasure"):
        done = forget_blocking(client, settings, ["alice", "alice", "nobody"])
    assert done.users == 2
    today = _today()
    assert set(done.days) == {today, today - timedelta(days=10), today - timedelta(days=200)}
    after = bucket_state(client, keys)  # also: counters equal bit counts, names list is the hash
    assert after == _without(before, "alice")
    bumped = {_text(k): v for k, v in client.hgetall(keys.versions()).items()}
    assert {day for day in versions if bumped[day] != versions[day]} == {d.isoformat() for d in done.days}
    # The ids are nowhere in the bucket's keys; the numbering keeps its size.
    bucket = bucket_of("alice", BUCKETS)
    assert "alice" not in map(_text, client.hkeys(keys.ids(bucket)))
    assert "alice" not in map(_text, client.lrange(keys.names(bucket), 0, -1))
    # Her first day is forgotten too: no first-day number, no bit in that day's first-day bitmap.
    assert _first_day(client, keys, bucket, number) == 0 and not client.getbit(keys.first_bits(first, bucket), number)
    (line,) = [r for r in caplog.records if r.getMessage() == "users forgotten"]
    assert line.count == 2 and line.sha256 == digests(["alice", "nobody"])  # type: ignore[attr-defined]
    assert "alice" not in caplog.text


def test_forgetting_clears_the_value_bitmaps_of_every_indexed_property_with_their_counters(
    target: tuple[Any, Settings],
) -> None:
    client, settings = target
    settings = replace(settings, segment_properties="platform,country", segment_max_values=2)
    keys, writer = KeySchema.of(settings), ActivityWriter.of(client, settings)
    # One batch a value, so that the first two are ids 1 and 2; linux and x come past the cap: "(other)", id 0.
    for users, value in (
        (["alice"], "ios"),
        (["alice", "bob"], "web"),
        (["carol", "alice"], "linux"),
        (["alice"], "x"),
    ):
        sets = _batch(ACTIVE, CREATED)
        for user in users:
            sets.add_segment(_today(), user, "platform", value)
        sets.add_segment(_today() - timedelta(days=200), "alice", "country", "DE")
        writer.write(sets)
    before = bucket_state(client, keys)
    today, old = _today().isoformat(), (_today() - timedelta(days=200)).isoformat()
    assert {label: ids for label, ids in before.items() if label.startswith("index:seg:")} == {
        f"index:seg:platform:0:{today}": {"alice", "carol"},
        f"index:seg:platform:1:{today}": {"alice"},
        f"index:seg:platform:2:{today}": {"alice", "bob"},
        f"index:seg:country:1:{old}": {"alice"},
    }
    forget_blocking(client, settings, ["alice"])
    assert bucket_state(client, keys) == _without(before, "alice")  # counters equal to the bits, alice nowhere


def test_a_forgotten_user_stays_forgotten_until_restored(target: tuple[Any, Settings]) -> None:
    client, settings = target
    keys = KeySchema.of(settings)
    live = ActivityWriter.of(client, settings)
    live.write(_batch(ACTIVE, CREATED))
    bucket, number = live.numbers(["alice"])["alice"]
    forget_blocking(client, settings, ["alice", "dave"])
    expected = bucket_state(client, keys)
    live.write(_batch(ACTIVE, CREATED))  # in flight: this writer remembers alice's number
    assert bucket_state(client, keys) == expected
    assert _first_day(client, keys, bucket, number) == 0  # first_days.lua refused her number too
    ActivityWriter.of(client, settings).write(_batch(ACTIVE, CREATED))  # a replay: a new writer
    assert bucket_state(client, keys) == expected
    assert restore_blocking(client, settings, ["alice", "erin"]).users == 1
    live.write(_batch({"alice": [(0, 11)]}))
    state = bucket_state(client, keys)
    today = _today().isoformat()
    assert "alice" in state[index_label("day", today)]
    assert "alice" in state[index_label("hour", f"{today}T11")]
    assert "alice" not in state.get(index_label("hour", f"{today}T09"), set())  # the past stays erased
    assert not any("alice" in ids for label, ids in state.items() if today not in label)
    # A number is never given twice: alice has a new one, past the old.
    bucket = bucket_of("alice", BUCKETS)
    assert client.hlen(keys.ids(bucket)) == client.llen(keys.names(bucket))


def test_the_plan_keeps_every_call_small(redis_prefix: str) -> None:
    settings = _settings(redis_prefix)
    erasure = Erasure(KeySchema.of(settings), settings, [f"user{i}" for i in range(1000)], time.time())
    rounds = erasure.rounds()
    retire, _ = next(rounds)
    today = _today()
    days = [today - timedelta(days=ago) for ago in range(400)]
    versions = [part for day in days for part in (day.isoformat().encode(), b"v")]
    # The first round: the retire calls, then the versions hash and the platform registry (its 100 values).
    users = [list(range(i, i + 5)) for i in range(0, 5 * (len(retire) - 2), 5)]
    registry = [part for value in range(1, 101) for part in (f"v{value}".encode(), str(value).encode())]
    commands, _ = rounds.send([*users, versions, registry])
    assert erasure.total > 0
    assert all(len(packed) < 200_000 for _, packed in commands)


def test_counters_stay_exact_beside_a_concurrent_writer(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    # A writer thread keeps writing batches with the forgotten users while the erasure runs: a writer that learnt
    # their numbers before, and a new one now and then (a replay); each round of the erasure waits for one more of
    # its batches, so writes land between retiring the numbers, clearing the bits and replacing the versions.
    settings = _settings(redis_prefix)
    population = {f"u{i}": [(ago, ago % 24) for ago in range(0, 120, 3)] for i in range(300)}
    gone = [f"u{i}" for i in range(0, 300, 7)]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    live = ActivityWriter.of(client, settings)
    live.write(_batch(population))
    written, stop = [0], threading.Event()
    progressed = threading.Condition()

    def write_concurrently() -> None:
        while not stop.is_set():
            batch = _batch({user: population[user] for user in [*gone, "u1", "u2"]})
            live.write(batch)
            if written[0] % 3 == 2:
                ActivityWriter.of(client, settings).write(batch)
            with progressed:
                written[0] += 1
                progressed.notify_all()

    def one_more_batch(_: object = None) -> None:
        with progressed:
            seen = written[0]
            assert progressed.wait_for(lambda: written[0] > seen, timeout=10)

    thread = threading.Thread(target=write_concurrently)
    thread.start()
    try:
        forget_blocking(redis_client, settings, gone, one_more_batch)
        during = written[0]
        one_more_batch()
        one_more_batch()
    finally:
        stop.set()
        thread.join(timeout=30)
        client.close()
    assert during >= 3 and written[0] > during
    oracle = replace(settings, redis_key_prefix=redis_prefix + "oracle:")
    ActivityWriter.of(redis_client, oracle).write(_batch({u: w for u, w in population.items() if u not in gone}))
    state = bucket_state(redis_client, KeySchema.of(settings))  # also: every counter equals its bitmap's bits
    assert state == bucket_state(redis_client, KeySchema.of(oracle))
