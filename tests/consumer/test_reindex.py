"""``active-users reindex`` against the real Redis (and the real Redis Cluster): the upgrade from the layouts before
the names lists. The ids hashes numbered by the previous version (without names lists) get their names lists, in
number order; the old day, hour and new-user sets become bits of the index and are deleted; a second run changes
nothing; an interrupted run is finished by the next; consumers writing meanwhile, of this version or of the previous
one, leave every names list equal to its ids hash reversed (:func:`~tests.support.indexstate.bucket_state`
checks that)."""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import consumer.reindex as reindex_module
from activeusers import connections
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema, bucket_of
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from consumer.reindex import ReindexResult, reindex
from tests.support.indexstate import bucket_state
from tests.support.oracle import index_label
from tests.support.processes import consumer_env

# Every test here reaches the real Redis (and cluster) through _target (request.getfixturevalue), which collection
# cannot see: conftest fails such a test unless it is marked by hand.
pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
RECENT, MID, OLDER, EXPIRED = (TODAY - timedelta(days=n) for n in (2, 10, 60, 500))
HOUR_RETENTION_DAYS = 30  # OLDER's hours are past it, its day is not; EXPIRED is past RETENTION_DAYS (400)

# The numbering script of the version before the names lists (activeusers/store.py before dfdf3d1), verbatim:
# dense numbers from HLEN, and no names list. What a consumer of that version does during a rolling upgrade.
PREVIOUS_NUMBERING = (
    "local n = redis.call('HLEN', KEYS[1]) local known = redis.call('HMGET', KEYS[1], unpack(ARGV)) "
    "local r, given, new = {}, {}, {} "
    "for i, id in ipairs(ARGV) do "
    "if known[i] then r[i] = tonumber(known[i]) elseif given[id] then r[i] = given[id] "
    "else given[id] = n r[i] = n new[#new + 1] = id new[#new + 1] = n n = n + 1 end end "
    "if #new > 0 then redis.call('HSET', KEYS[1], unpack(new)) end "
    "return r"
)
PROGRESS = re.compile(r"(\d+)/(\d+) ids")


@dataclass
class Target:
    """One Redis deployment under a test's own prefix: ``client`` for seeding and checking (``str`` replies) and
    the settings the service's own client is made from (:meth:`service`, as ``active-users reindex`` makes it)."""

    client: Any
    settings: Settings
    keys: KeySchema

    def service(self) -> connections.SyncClient:
        return connections.redis_client(self.settings)


def _target(request: pytest.FixtureRequest, kind: str, **settings: Any) -> Target:
    if kind == "cluster":
        client, prefix = request.getfixturevalue("cluster_client"), request.getfixturevalue("cluster_prefix")
        url, cluster = request.getfixturevalue("redis_cluster"), True
    else:
        client, prefix = request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix")
        url, cluster = request.getfixturevalue("stack").redis_url, False
    built = Settings(redis_url=url, redis_cluster=cluster, redis_key_prefix=prefix, **settings)
    return Target(client, built, KeySchema.of(built))


class _Ticking:
    """A clock 5 s further on at every reading: the progress bar (every 2 s when not on a terminal) shows every
    update, so its output says how the run went."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        self.now += 5.0
        return self.now


def _progress(text: str) -> list[tuple[int, int]]:
    """The (done, total) of every progress line."""
    return [(int(done), int(total)) for done, total in PROGRESS.findall(text)]


def _number_as_before(client: Any, keys: KeySchema, users: Iterable[str], seed: int) -> dict[str, int]:
    """Number ``users`` (in a shuffled order: numbers are not the ids' order) as the previous version did, each
    bucket's ids hash without a names list; their numbers."""
    ordered = sorted(set(users))
    random.Random(seed).shuffle(ordered)
    per_bucket: dict[int, list[str]] = {}
    for user in ordered:
        per_bucket.setdefault(bucket_of(user, keys.buckets), []).append(user)
    numbers: dict[str, int] = {}
    for bucket, ids in per_bucket.items():
        for start in range(0, len(ids), 7):  # several calls per bucket, as batches of a consumer
            chunk = ids[start : start + 7]
            given = client.eval(PREVIOUS_NUMBERING, 1, keys.ids(bucket), *chunk)
            numbers.update(zip(chunk, map(int, given), strict=True))
    return numbers


def _write_before(target: Target, buckets: UserSets) -> None:
    """Set the bits (and counters) of users the previous version numbered: the numbers are known, so nothing is
    numbered and no names list is started."""
    client = target.service()
    try:
        ActivityWriter(client, target.keys, target.settings).write(buckets)
    finally:
        client.close()


def _numbering(client: Any, keys: KeySchema) -> list[dict[str, str]]:
    return [client.hgetall(keys.ids(bucket)) for bucket in range(keys.buckets)]


def _names(client: Any, keys: KeySchema) -> list[list[str]]:
    return [client.lrange(keys.names(bucket), 0, -1) for bucket in range(keys.buckets)]


def _old_sets(client: Any, keys: KeySchema) -> dict[str, int]:
    """Every old set left under the schema's prefix and zone, with its size."""
    patterns = (keys.old_day_pattern(), keys.old_hour_pattern(), keys.old_new_users_pattern())
    return {key: client.scard(key) for pattern in patterns for key in client.scan_iter(match=pattern, count=1000)}


def _run(target: Target, out: Any | None = None, clock: Callable[[], float] | None = None) -> ReindexResult:
    client = target.service()
    try:
        writer = ActivityWriter(client, target.keys, target.settings)
        return reindex(client, writer, target.keys, out if out is not None else io.StringIO(), clock or _Ticking())
    finally:
        client.close()


def _label(kind: str, when: date, hour: int | None = None) -> str:
    return index_label(kind, when.isoformat() if hour is None else f"{when.isoformat()}T{hour:02d}")


@dataclass
class _Upgrade:
    """What a deployment of the previous version left, and what the index holds after the upgrade."""

    numbers: dict[str, int]  # the previous version's numbering
    expected: dict[str, set[str]]
    sets: dict[str, int]  # kind -> old sets of it
    members: int  # members of every old set, together


def _previous_version(target: Target) -> _Upgrade:
    """Seed what the previous version left: users numbered without names lists and their bits, day sets (of those
    users and of users that were never numbered, active before the index existed), and the hour and new-user sets
    of a version before the index. Every user of an hour set is in a day set here (a test below has one that is not)."""
    client, keys = target.client, target.keys
    indexed = [f"u{n}" for n in range(400)]
    set_only = [f"s{n}" for n in range(150)]
    numbers = _number_as_before(client, keys, indexed, seed=7)
    bits = UserSets()
    for n, user in enumerate(indexed[:300]):
        bits.add_active(RECENT, 9 if n % 2 else 14, user, 0)
    for user in indexed[200:]:
        bits.add_active(MID, 20, user, 0)
    _write_before(target, bits)
    days = {
        RECENT: {*indexed[:300], *set_only[:100]},
        MID: {*indexed[200:], *set_only[100:]},
        OLDER: {"old", "u0"},
        EXPIRED: {"gone"},  # past RETENTION_DAYS: no bit; deleted all the same
    }
    hours = {(RECENT, 9): {*set_only[:40], "u0"}, (OLDER, 0): {"old"}}  # OLDER's hours: past HOUR_RETENTION_DAYS
    created = {RECENT: {"c-only", "s0"}, OLDER: {"old"}}
    for day, users in days.items():
        client.sadd(keys.old_day(day), *users)
    for (day, hour), users in hours.items():
        client.sadd(keys.old_hour(day, hour), *users)
    for day, users in created.items():
        client.sadd(keys.old_new_users(day), *users)
    expected = {
        _label("day", RECENT): days[RECENT],
        _label("hour", RECENT, 9): {*indexed[1:300:2], *set_only[:40], "u0"},
        _label("hour", RECENT, 14): set(indexed[0:300:2]),
        _label("day", MID): days[MID],
        _label("hour", MID, 20): set(indexed[200:]),
        _label("day", OLDER): days[OLDER],
        _label("new", RECENT): created[RECENT],
        _label("new", OLDER): created[OLDER],
    }
    members = sum(map(len, (*days.values(), *hours.values(), *created.values())))
    return _Upgrade(numbers, expected, {"days": len(days), "hours": len(hours), "created": len(created)}, members)


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_the_upgrade_lists_every_number_indexes_every_set_and_deletes_them(
    request: pytest.FixtureRequest, kind: str
) -> None:
    target = _target(request, kind, hour_retention_days=HOUR_RETENTION_DAYS)
    client, keys = target.client, target.keys
    upgrade = _previous_version(target)
    assert _names(client, keys) == [[]] * keys.buckets  # the previous version kept no names lists
    elsewhere = keys.prefix + "day:Europe/Paris:" + RECENT.isoformat()  # another zone's day set: not this index's
    client.sadd(elsewhere, "paris")
    out = io.StringIO()

    result = _run(target, out)

    assert (result.day_sets, result.hour_sets, result.new_user_sets) == tuple(upgrade.sets.values())
    assert result.ids == upgrade.members
    assert result.listed == len(upgrade.numbers)  # numbers given later (the sets' users) listed themselves
    assert bucket_state(client, keys) == upgrade.expected  # and every names list is its ids hash reversed
    numbering = _numbering(client, keys)
    kept = {user: int(numbering[bucket_of(user, keys.buckets)][user]) for user in upgrade.numbers}
    assert kept == upgrade.numbers  # the bitmaps' numbers still mean their users
    assert _old_sets(client, keys) == {}
    assert client.smembers(elsewhere) == {"paris"}
    shown = _progress(out.getvalue())
    total = result.listed + result.ids
    assert {line_total for _, line_total in shown} == {total}
    done = [line_done for line_done, _ in shown]
    assert done == sorted(done) and done[-1] == total
    assert any(0 < n < result.listed for n in done), "no progress shown while listing the names"
    assert any(result.listed < n < total for n in done), "no progress shown while indexing the sets"
    assert "100.0%" in out.getvalue()

    names = _names(client, keys)
    made = [client.get(keys.names_made(bucket)) for bucket in range(keys.buckets)]
    assert all(made[bucket] for bucket in range(keys.buckets) if names[bucket])  # each list says when it was begun
    again = _run(target)
    assert again == ReindexResult(0, 0, 0, 0, 0, again.seconds)
    assert bucket_state(client, keys) == upgrade.expected
    assert _numbering(client, keys) == numbering
    assert _names(client, keys) == names
    assert [client.get(keys.names_made(bucket)) for bucket in range(keys.buckets)] == made
    assert client.smembers(elsewhere) == {"paris"}


def test_an_hour_set_of_users_in_no_day_set_is_migrated(request: pytest.FixtureRequest) -> None:
    target = _target(request, "redis")
    client, keys = target.client, target.keys
    _number_as_before(client, keys, ["numbered-before"], seed=1)  # its day set expired with MEMBER_RETENTION_DAYS
    client.sadd(keys.old_hour(RECENT, 3), "numbered-before", "hour-only")
    result = _run(target)
    assert (result.hour_sets, result.ids) == (1, 2)
    assert bucket_state(client, keys) == {_label("hour", RECENT, 3): {"numbered-before", "hour-only"}}
    assert _old_sets(client, keys) == {}


class _Interrupted(Exception):
    """Stands for whatever ends a run early (Ctrl-C, a lost connection, a killed process)."""


class _StopAt(io.StringIO):
    """Progress output that ends the run at the first progress line whose count reaches ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def write(self, text: str) -> int:
        written = super().write(text)
        shown = _progress(text)
        if shown and shown[-1][0] >= self.at:
            raise _Interrupted(text)
        return written


@pytest.mark.parametrize(
    "phase",
    [
        "listing",
        "indexing",
        "after the day sets",
    ],
)
def test_an_interrupted_run_is_finished_by_the_next(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    monkeypatch.setattr(reindex_module, "NAMES_CHUNK", 40)  # several appends per bucket: a list left half done
    monkeypatch.setattr(reindex_module, "MEMBERS_CHUNK", 60)  # several writes per set: a set left half indexed
    target = _target(request, "redis", user_buckets=4)
    client, keys = target.client, target.keys
    previous = [f"p{n}" for n in range(600)]
    numbers = _number_as_before(client, keys, previous, seed=11)
    bits = UserSets()
    for user in previous:
        bits.add_active(MID, 6, user, 0)
    _write_before(target, bits)
    fresh = [f"f{n}" for n in range(300)]
    days = {RECENT: {*previous[:150], *fresh[:150]}, MID: {*previous[100:300], *fresh[100:]}}
    for day, users in days.items():
        client.sadd(keys.old_day(day), *users)
    client.sadd(keys.old_hour(RECENT, 22), *fresh[:70])
    client.sadd(keys.old_new_users(RECENT), *fresh[:10])
    sets_before = _old_sets(client, keys)

    if phase == "after the day sets":  # killed once the day sets are indexed and deleted
        members = reindex_module._members

        def killed_at_the_hour_sets(client: Any, key: str) -> Any:
            if keys.old_hour_of(key) is not None:
                raise _Interrupted(key)
            return members(client, key)

        with monkeypatch.context() as patch, pytest.raises(_Interrupted):
            patch.setattr(reindex_module, "_members", killed_at_the_hour_sets)
            _run(target)
    else:
        at = 300 if phase == "listing" else len(previous) + 500  # mid-bucket 2; in the second day set
        with pytest.raises(_Interrupted):
            _run(target, _StopAt(at))

    numbering, names = _numbering(client, keys), _names(client, keys)
    for bucket in range(keys.buckets):  # what was listed is right: each list a prefix of its hash reversed
        by_number = {int(n): user for user, n in numbering[bucket].items()}
        assert names[bucket] == [by_number[n] for n in range(len(names[bucket]))]
    listed = sum(map(len, names))
    left = _old_sets(client, keys)
    if phase == "listing":
        assert 0 < listed < len(previous) and left == sets_before
    elif phase == "indexing":
        assert listed == sum(map(len, numbering)) and 0 < len(left) < len(sets_before)
    else:
        assert listed == sum(map(len, numbering)) and left.keys() == sets_before.keys() - set(map(keys.old_day, days))
    # A consumer of this version meanwhile: its new numbers list themselves only in the buckets already listed.
    meanwhile = UserSets()
    for user in (*previous[500:], *(f"m{n}" for n in range(40))):
        meanwhile.add_active(TODAY, 1, user, 0)
    _write_before(target, meanwhile)
    unlisted = sum(client.hlen(keys.ids(b)) - client.llen(keys.names(b)) for b in range(keys.buckets))

    result = _run(target)

    assert result.listed == unlisted
    kinds = {"days": keys.old_day_of, "hours": keys.old_hour_of, "created": keys.old_new_users_of}
    left_of = {kind: sum(1 for key in left if parse(key) is not None) for kind, parse in kinds.items()}
    assert (result.day_sets, result.hour_sets, result.new_user_sets) == tuple(left_of.values())
    assert result.ids == sum(left.values())  # a set left half indexed is indexed again, whole
    assert _old_sets(client, keys) == {}
    assert bucket_state(client, keys) == {
        _label("day", RECENT): days[RECENT],
        _label("day", MID): {*previous, *days[MID]},
        _label("hour", MID, 6): set(previous),
        _label("hour", RECENT, 22): set(fresh[:70]),
        _label("new", RECENT): set(fresh[:10]),
        _label("day", TODAY): {*previous[500:], *(f"m{n}" for n in range(40))},
        _label("hour", TODAY, 1): {*previous[500:], *(f"m{n}" for n in range(40))},
    }
    numbering = _numbering(client, keys)
    assert {user: int(numbering[bucket_of(user, keys.buckets)][user]) for user in previous} == numbers


class _LiveWriter(threading.Thread):
    """A consumer of this version writing all along: batches of new users (and some known ones) active today,
    one after the other, until :meth:`finish`, then one last batch (bounded: ``deadline_s`` at most)."""

    def __init__(self, target: Target, known: list[str], deadline_s: float = 120.0) -> None:
        super().__init__(name="live-writer", daemon=True)
        self.target = target
        self.known = known
        self.deadline = time.monotonic() + deadline_s
        self.written: set[str] = set()
        self.batches = 0
        self.error: BaseException | None = None
        self.timed_out = False
        self._finish = threading.Event()
        self._changed = threading.Condition()
        self._running = True

    def run(self) -> None:
        client = self.target.service()
        writer = ActivityWriter(client, self.target.keys, self.target.settings)
        try:
            while True:
                last = self._finish.is_set()
                users = {f"live-{self.batches}-{n}" for n in range(12)}
                users |= {self.known[(self.batches * 5 + n) % len(self.known)] for n in range(5)}
                batch = UserSets()
                for user in users:
                    batch.add_active(TODAY, 5, user, 0)
                writer.write(batch)
                with self._changed:
                    self.written |= users
                    self.batches += 1
                    self._changed.notify_all()
                if last:
                    return
                if time.monotonic() > self.deadline:
                    self.timed_out = True
                    return
        except BaseException as exc:
            self.error = exc
        finally:
            client.close()
            with self._changed:
                self._running = False
                self._changed.notify_all()

    def wait_for(self, batches: int, timeout_s: float = 30.0) -> None:
        """Wait until ``batches`` batches are written."""
        with self._changed:
            self._changed.wait_for(lambda: self.batches >= batches or not self._running, timeout_s)
            assert self.batches >= batches, f"the writer stopped at {self.batches} batches: {self.error!r}"

    def finish(self) -> None:
        self._finish.set()
        self.join(60)
        assert not self.is_alive(), "the writer did not finish"
        assert self.error is None, self.error
        assert not self.timed_out, "the writer ran out of time"


class _Paced(io.StringIO):
    """Progress output that, at every progress line, lets the live writer store one more batch before the run goes
    on: the batches land between the run's steps (between two appends of a bucket's names, between two sets)."""

    def __init__(self, live: _LiveWriter) -> None:
        super().__init__()
        self.live = live
        self.paced = 0

    def write(self, text: str) -> int:
        self.live.wait_for(self.live.batches + 1)
        self.paced += 1
        return super().write(text)


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_a_consumer_writing_all_along_keeps_every_names_list_equal_to_its_hash(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(reindex_module, "NAMES_CHUNK", 100)
    monkeypatch.setattr(reindex_module, "MEMBERS_CHUNK", 250)
    target = _target(request, kind, user_buckets=4)
    client, keys = target.client, target.keys
    previous = [f"old-{n}" for n in range(2000)]
    numbers = _number_as_before(client, keys, previous, seed=5)
    bits = UserSets()
    for user in previous:
        bits.add_active(RECENT, 8, user, 0)
    _write_before(target, bits)
    set_only = [f"set-{n}" for n in range(1000)]
    client.sadd(keys.old_day(RECENT), *previous[:500], *set_only)
    live = _LiveWriter(target, [*previous[::7], *set_only[::7]])
    live.start()
    try:
        live.wait_for(1)  # its first numbers come before any names list: reindex lists them
        out = _Paced(live)
        before = live.batches
        result = _run(target, out)
        during = live.batches - before
    finally:
        live.finish()

    assert out.paced >= 20 and during >= out.paced  # batches landed all through the run
    assert result.listed >= len(previous) + 12  # the previous numbers, and the live ones given before their list
    state = bucket_state(client, keys)  # every names list is its hash reversed, every bit names a user
    assert state[_label("day", TODAY)] == live.written
    assert state[_label("hour", TODAY, 5)] == live.written
    assert state[_label("day", RECENT)] == {*previous, *set_only}
    assert _old_sets(client, keys) == {}
    numbering = _numbering(client, keys)
    assert {user: int(numbering[bucket_of(user, keys.buckets)][user]) for user in previous} == numbers
    assert sum(map(len, numbering)) == len({*previous, *set_only, *live.written})


def test_numbers_a_consumer_of_the_previous_version_gives_meanwhile_are_listed_at_the_end(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reindex_module, "MEMBERS_CHUNK", 20)
    target = _target(request, "redis", user_buckets=2)
    client, keys = target.client, target.keys
    previous = [f"p{n}" for n in range(100)]
    _number_as_before(client, keys, previous, seed=3)
    set_only = [f"s{n}" for n in range(100)]
    client.sadd(keys.old_day(RECENT), *previous[:50], *set_only)
    rolling = [f"rolling-{n}" for n in range(10)]

    class OldConsumerMeanwhile(io.StringIO):
        """At the first progress line of the sets' step, a consumer of the previous version numbers new users
        (without listing them) and sets their bits."""

        calls = 0

        def write(self, text: str) -> int:
            shown = _progress(text)
            if shown and shown[-1][0] > len(previous) and not self.calls:
                self.calls += 1
                _number_as_before(client, keys, rolling, seed=9)
                meanwhile = UserSets()
                for user in rolling:
                    meanwhile.add_active(TODAY, 0, user, 0)
                _write_before(target, meanwhile)
            return super().write(text)

    out = OldConsumerMeanwhile()
    result = _run(target, out)

    assert out.calls == 1
    # The final step lists the rolling numbers, and the set users numbered after them in the same bucket (the
    # numbering script lists only onto a complete list).
    assert len(previous) + len(rolling) <= result.listed <= len(previous) + len(rolling) + len(set_only)
    assert bucket_state(client, keys) == {
        _label("day", RECENT): {*previous[:50], *set_only},
        _label("day", TODAY): set(rolling),
        _label("hour", TODAY, 0): set(rolling),
    }
    assert _run(target).listed == 0


def test_a_hash_whose_numbers_are_not_dense_is_refused(request: pytest.FixtureRequest) -> None:
    target = _target(request, "redis", user_buckets=1)
    client, keys = target.client, target.keys
    client.hset(keys.ids(0), mapping={"a": 0, "b": 2})  # number 1 missing: no list can say who bit 2 is
    with pytest.raises(StoreUnavailable, match="not dense"):
        _run(target)
    assert client.lrange(keys.names(0), 0, -1) == ["a"]  # listed up to the gap, never past it


def test_the_command_reports_on_stderr(stack: Any, redis_client: Any, redis_prefix: str) -> None:
    keys = KeySchema(redis_prefix, "UTC")
    _number_as_before(redis_client, keys, ["p1", "p2"], seed=2)
    redis_client.sadd(keys.old_day(TODAY), "a", "b", "p1")
    redis_client.sadd(keys.old_hour(TODAY, 1), "a")
    env = consumer_env(stack, "unused", redis_prefix, "unused")
    done = subprocess.run(
        [sys.executable, "-m", "activeusers.cli", "reindex"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "6/6 ids" in done.stderr  # 2 numbers listed, 4 set members indexed
    assert (
        "reindex complete: 2 user ids listed, 4 ids from 1 day sets, 1 hour sets and 0 new-user sets "
        "(each set deleted once indexed)" in done.stderr
    )
    assert bucket_state(redis_client, keys) == {
        index_label("day", TODAY.isoformat()): {"a", "b", "p1"},
        index_label("hour", f"{TODAY.isoformat()}T01"): {"a"},
    }
    assert _old_sets(redis_client, keys) == {}
