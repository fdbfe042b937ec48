"""Reading and writing activity data in Redis, through the key schema of :mod:`activeusers.keys`.

The consumer writes with :class:`ActivityWriter` (blocking redis-py, since the consumer is a blocking process);
the API reads with :class:`ActivityReader` (redis-py's asyncio client). Writes are set additions with
deterministic expiry times, so repeating a write (at-least-once delivery, replays) changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import struct
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypeVar, cast

import hiredis
import orjson
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from activeusers.days import day_expiry_s
from activeusers.errors import StoreUnavailable
from activeusers.keys import DAY_SLOT, NEW_SLOT, SLOTS, KeySchema, bucket_of
from activeusers.redisconn import REDIS_ERRORS, AsyncClient, Routed, SyncClient, send_commands, send_commands_async
from activeusers.settings import Settings

# Bounds the size of one Redis command: a huge SADD or a pipeline of hundreds of SMEMBERS would hold the
# server's single thread (and the client's buffers) for longer than other clients should wait.
SADD_CHUNK = 10_000
EXPIRY_REFRESH_S = 600.0
EXPIRY_MEMO_KEYS = 100_000
READ_CHUNK = 16
READS_IN_FLIGHT = 2
# Bounds the readiness check's read; far more consumer-group members than any topic has partitions.
HEARTBEATS_READ = 1000


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, called by its SHA-1 (Redis' name for it, not a security measure)."""

    source: str

    @property
    def sha(self) -> str:
        """The name Redis knows the script by."""
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


# Numbers the user ids given (ARGV) in one bucket's hash KEYS[1]: a known id keeps its number, an unknown one gets
# the next free one (the hash's size), in one atomic script, so any number of writers agree and the numbers stay
# dense. Replies the numbers in ARGV order. NUMBER_CHUNK ids bound one call's time on Redis' thread.
NUMBER_USERS: Final = Script(
    "local n = redis.call('HLEN', KEYS[1]) local r = {} "
    "for i, id in ipairs(ARGV) do local v = redis.call('HGET', KEYS[1], id) "
    "if v then r[i] = tonumber(v) else redis.call('HSET', KEYS[1], id, n) r[i] = n n = n + 1 end end "
    "return r"
)
NUMBER_CHUNK = 1000
# One user bucket's share of a batch. ARGV[1] is the number of records; record i sets, in bitmap KEYS[2i - 1], the
# bits "n, n offsets" that follow "counter, bitmap expiry, counts expiry", adds how many were not set before to that
# counter of KEYS[2i] (a day's counts key of the same bucket) and gives both keys their (deterministic) expiry.
# Atomic, so a repeated write counts nothing and the counters stay exact under replays and concurrent writers
# (counting needs no BITCOUNT). BITS_CHUNK bits bound one call's time on Redis' thread.
SET_BITS: Final = Script(
    "local a = 2 for r = 1, tonumber(ARGV[1]) do "
    "local key, counts, n, new = KEYS[2 * r - 1], KEYS[2 * r], tonumber(ARGV[a + 3]), 0 "
    "for i = a + 4, a + 3 + n do if redis.call('SETBIT', key, ARGV[i], 1) == 0 then new = new + 1 end end "
    "if new > 0 then redis.call('BITFIELD', counts, 'INCRBY', 'u32', '#' .. ARGV[a], new) end "
    "redis.call('EXPIREAT', key, ARGV[a + 1]) redis.call('EXPIREAT', counts, ARGV[a + 2]) a = a + 4 + n end "
    "return 0"
)
BITS_CHUNK = 2000
# Counts the users of unions of one bucket's bitmaps (KEYS[2..], in order), ARGV[g] of them in group g: each group
# is ORed into the bucket's scratch key KEYS[1] (BITOP), counted (BITCOUNT) and the scratch deleted, all inside
# this call (so concurrent calls never see each other's scratch). Replies the count of each group.
UNION_COUNTS: Final = Script(
    "local counts, at = {}, 2 for g = 1, #ARGV do local n, c = tonumber(ARGV[g]), 0 "
    "if n > 0 then redis.call('BITOP', 'OR', KEYS[1], unpack(KEYS, at, at + n - 1)) "
    "c = redis.call('BITCOUNT', KEYS[1]) redis.call('DEL', KEYS[1]) end "
    "counts[g] = c at = at + n end return counts"
)
SCRIPTS: Final = (NUMBER_USERS, SET_BITS, UNION_COUNTS)
# Keys fetched per MGET (keys of one bucket): a bitmap is about 4 kB at the large dataset, counts 104 bytes, so
# one MGET stays far below a millisecond of Redis' thread.
FETCH_CHUNK = 32
COUNTS_BYTES: Final = 4 * SLOTS
# How many user numbers the writer remembers (about 100 bytes each) before it starts over.
NUMBER_MEMO_USERS = 2_000_000
# A remembered number packs the bucket into its low bits (USER_BUCKETS is at most 2**BUCKET_BITS).
BUCKET_BITS: Final = 14
BUCKET_MASK: Final = (1 << BUCKET_BITS) - 1

# hiredis's stub types the argument as a one-element tuple; it takes a command of any length.
pack_command = cast(Callable[[tuple[str | int, ...]], bytes], hiredis.pack_command)

K = TypeVar("K")


@dataclass(slots=True)
class Buckets:
    """Distinct user ids per local day, hour and day of creation, accumulated from one batch of events, ready to
    be written at once (these time buckets are not the user buckets of :func:`activeusers.keys.bucket_of`)."""

    days: defaultdict[date, set[str]] = field(default_factory=lambda: defaultdict(set))
    hours: defaultdict[tuple[date, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    created: defaultdict[date, set[str]] = field(default_factory=lambda: defaultdict(set))
    newest_event_ms: int = -1

    def add_active(self, day: date, hour: int, user_id: str, ts_ms: int) -> None:
        """Record ``user_id`` as active in the day and hour bucket (as the classifier does, for seeding tools)."""
        self.days[day].add(user_id)
        self.hours[(day, hour)].add(user_id)
        self.newest_event_ms = max(self.newest_event_ms, ts_ms)

    def add_created(self, day: date, user_id: str, ts_ms: int) -> None:
        """Record that ``user_id`` was created on ``day``."""
        self.created[day].add(user_id)
        self.newest_event_ms = max(self.newest_event_ms, ts_ms)

    def __bool__(self) -> bool:
        return bool(self.days or self.created)


@dataclass(slots=True)
class _Call:
    """One :data:`SET_BITS` call of one user bucket: its keys (a bitmap and its counts key per record) and the
    records' arguments."""

    keys: list[str] = field(default_factory=list)
    args: list[int] = field(default_factory=list)
    bits: int = 0

    def packed(self) -> Routed:
        """The call packed, with its routing key."""
        command: tuple[str | int, ...] = (
            "EVALSHA",
            SET_BITS.sha,
            len(self.keys),
            *self.keys,
            len(self.keys) // 2,
            *self.args,
        )
        return self.keys[0], pack_command(command)


class ActivityWriter:
    """Writes batches of buckets, expiry included: the day sets and the index's bitmaps in one pipelined round
    trip, after one more for the numbers of users it has not seen before."""

    def __init__(
        self,
        client: SyncClient,
        keys: KeySchema,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keys = keys
        self._zone = settings.zone
        self._retention_days = settings.retention_days
        self._hour_retention_days = settings.hour_retention_days
        self._member_days = settings.member_days
        self._clock = clock
        self._wall = wall
        self._expiry_of: dict[tuple[date, int], int] = {}
        self._expiry_sent: dict[str, tuple[int, float]] = {}
        # user id -> number << BUCKET_BITS | bucket: numbers never change once given, so a memo is always exact.
        self._numbers: dict[str, int] = {}
        self._tags = [keys.tag(bucket) for bucket in range(keys.buckets)]
        self._heartbeat_ttl_ms = max(1, int(settings.consumer_stale_s * 1000))
        # Versions are this writer's id and a sequence number: unique among writers and across restarts.
        self._writer_id = secrets.token_hex(8)
        self._writes = itertools.count()

    def write(self, buckets: Buckets) -> None:
        """Store every bucket of the batch; raise :class:`StoreUnavailable` if Redis fails (nothing is partial
        in a harmful way: a retry of the same batch converges to the same state)."""
        self._store(buckets, members=True)

    def index(self, buckets: Buckets) -> None:
        """Like :meth:`write` without the day sets: the bitmaps only (``reindex`` builds them from the sets)."""
        self._store(buckets, members=False)

    def numbers(self, user_ids: Collection[str]) -> dict[str, tuple[int, int]]:
        """The (bucket, number) of each user id, numbering the unknown ones (raises :class:`StoreUnavailable`)."""
        try:
            self._number(user_ids)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis numbering failed: {exc}") from exc
        memo = self._numbers
        return {user: (memo[user] & BUCKET_MASK, memo[user] >> BUCKET_BITS) for user in user_ids}

    def _store(self, buckets: Buckets, *, members: bool) -> None:
        commands: list[Routed] = []
        calls: dict[int, list[_Call]] = {}
        now = self._clock()
        wall_s = self._wall()
        expiring: list[tuple[str, int]] = []
        keys = self._keys
        try:
            self._number([user for group in (buckets.days, buckets.created) for u in group.values() for user in u])
            for day, users in buckets.days.items():
                long = self._expiry(day, self._retention_days)
                if members:
                    members_until = self._expiry(day, self._member_days)
                    self._add(commands, keys.day(day), users, members_until, wall_s, now, expiring)
                counts = keys.counts_part(day)
                self._bits(calls, (keys.day_part(day), counts, DAY_SLOT), users, (long, long), wall_s)
            for (day, hour), users in buckets.hours.items():
                hour_expiry = (self._expiry(day, self._hour_retention_days), self._expiry(day, self._retention_days))
                target = (keys.hour_part(day, hour), keys.counts_part(day), hour)
                self._bits(calls, target, users, hour_expiry, wall_s)
            for day, users in buckets.created.items():
                long = self._expiry(day, self._retention_days)
                target = (keys.new_part(day), keys.counts_part(day), NEW_SLOT)
                self._bits(calls, target, users, (long, long), wall_s)
            commands += [call.packed() for bucket_calls in calls.values() for call in bucket_calls]
            # NOSCRIPT (a new or restarted Redis): the script is loaded and sent again; idempotent, so bits set
            # before count nothing again.
            # The days' new version is set once their bits are: a reader that sees it finds every bit it vouches for.
            self._send(commands, (SET_BITS.source,), self._new_version({*buckets.days, *buckets.created}))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis write failed: {exc}") from exc
        if len(self._expiry_sent) > EXPIRY_MEMO_KEYS:
            self._expiry_sent.clear()
        for key, expire_at in expiring:
            self._expiry_sent[key] = (expire_at, now)

    def _new_version(self, days: Collection[date]) -> Routed | None:
        """The command that gives ``days`` a new index version (a token unique to this write), if any."""
        if not days:
            return None
        token = f"{self._writer_id}.{next(self._writes)}"
        key = self._keys.versions()
        fields = [part for day in days for part in (self._keys.day_field(day), token)]
        return key, pack_command(("HSET", key, *fields))

    def _number(self, users: Collection[str]) -> None:
        """Make sure every user of ``users`` has its number in the memo: one round trip for the unknown ones."""
        memo = self._numbers
        if len(memo) + len(users) > NUMBER_MEMO_USERS:
            memo.clear()
        buckets = self._keys.buckets
        unknown: defaultdict[int, set[str]] = defaultdict(set)
        for user in users:
            if user not in memo:
                unknown[bucket_of(user, buckets)].add(user)
        if not unknown:
            return
        calls: list[tuple[int, list[str]]] = []
        for bucket, found in unknown.items():
            ids = list(found)
            calls += [(bucket, ids[start : start + NUMBER_CHUNK]) for start in range(0, len(ids), NUMBER_CHUNK)]
        commands = [
            (self._keys.ids(bucket), pack_command(("EVALSHA", NUMBER_USERS.sha, 1, self._keys.ids(bucket), *ids)))
            for bucket, ids in calls
        ]
        replies = self._send(commands, (NUMBER_USERS.source,))  # NOSCRIPT (a new or restarted Redis): loaded
        for (bucket, ids), numbers in zip(calls, replies, strict=True):
            for user, number in zip(ids, numbers, strict=True):
                memo[user] = int(number) << BUCKET_BITS | bucket

    def _expiry(self, day: date, retention_days: int) -> int:
        found = self._expiry_of.get((day, retention_days))
        if found is None:
            if len(self._expiry_of) > EXPIRY_MEMO_KEYS:
                self._expiry_of.clear()
            found = self._expiry_of[(day, retention_days)] = day_expiry_s(day, self._zone, retention_days)
        return found

    def _send(self, commands: Sequence[Routed], scripts: Sequence[str] = (), then: Routed | None = None) -> list[Any]:
        """Send pre-packed commands (each with its routing key; ``then`` after they took effect) and return their
        replies in order; raise the first error reply once every reply is read. The one place that talks to
        Redis for batches."""
        # Pre-packed and sent in one write per Redis node: redis-py's Pipeline spends microseconds of Python per
        # command on bookkeeping and reply callbacks, and a backfill batch sends hundreds of commands: this halves
        # the client's CPU per stored event (measured 1.5 us -> 0.8 us), on the store worker's busy core.
        replies = send_commands(self._client, commands, scripts, then)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _add(
        self,
        commands: list[Routed],
        key: str,
        users: set[str],
        expire_at: int,
        wall_s: float,
        now: float,
        expiring: list[tuple[str, int]],
    ) -> None:
        if expire_at <= wall_s:
            return  # past this key's retention: an old event still counts in the index, but lists no member
        members = list(users)
        for start in range(0, len(members), SADD_CHUNK):
            commands.append((key, pack_command(("SADD", key, *members[start : start + SADD_CHUNK]))))
        self._expire(commands, key, expire_at, now, expiring)

    def _bits(
        self,
        calls: dict[int, list[_Call]],
        target: tuple[str, str, int],
        users: set[str],
        expiry: tuple[int, int],
        wall_s: float,
    ) -> None:
        """Set the bits of ``users`` in the bitmaps of ``target`` (key part, counts key part, counter) of their
        buckets; ``expiry``: the bitmap's and the counts key's (sent with the bits: the script's EXPIREAT costs
        Redis a microsecond, a memo of every bucket's keys would cost this busy core more). Past its retention a
        bitmap is not written."""
        if expiry[0] <= wall_s:
            return
        part, counts_part, slot = target
        memo = self._numbers
        offsets: defaultdict[int, list[int]] = defaultdict(list)
        for user in users:
            packed = memo[user]
            offsets[packed & BUCKET_MASK].append(packed >> BUCKET_BITS)
        tags = self._tags
        for bucket, numbers in offsets.items():
            bucket_calls = calls.get(bucket)
            if bucket_calls is None:
                bucket_calls = calls[bucket] = [_Call()]
            tag = tags[bucket]
            for start in range(0, len(numbers), BITS_CHUNK):
                chunk = numbers[start : start + BITS_CHUNK] if len(numbers) > BITS_CHUNK else numbers
                call = bucket_calls[-1]
                if call.bits and call.bits + len(chunk) > BITS_CHUNK:
                    call = _Call()
                    bucket_calls.append(call)
                call.keys += (tag + part, tag + counts_part)
                call.args += (slot, expiry[0], expiry[1], len(chunk), *chunk)
                call.bits += len(chunk)

    def _expire(
        self, commands: list[Routed], key: str, expire_at: int, now: float, expiring: list[tuple[str, int]]
    ) -> None:
        # Each command costs the client microseconds of Python, and a backfill batch touches hundreds of day sets:
        # a key's (deterministic) expiry is sent once and then again only every EXPIRY_REFRESH_S, which also
        # restores it on a key that lost it (a Redis restarted without persistence, a manual PERSIST).
        sent = self._expiry_sent.get(key)
        if sent is None or sent[0] != expire_at or now - sent[1] >= EXPIRY_REFRESH_S:
            commands.append((key, pack_command(("EXPIREAT", key, expire_at))))
            expiring.append((key, expire_at))

    def heartbeat(self, member: str, state: dict[str, object], now_ms: int) -> None:
        """Publish this consumer's liveness record (read by the API's readiness check) for ``CONSUMER_STALE``.

        The record is a key of its own that Redis expires, indexed in a sorted set scored by expiry. Index
        entries are pruned one time to live after they expired, which leaves room for clocks that differ
        between hosts: the record's own expiry (Redis' clock) is what decides liveness.
        """
        index = self._keys.heartbeats()
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(self._keys.heartbeat(member), orjson.dumps(state), px=self._heartbeat_ttl_ms)
                pipe.zadd(index, {member: now_ms + self._heartbeat_ttl_ms})
                pipe.zremrangebyscore(index, "-inf", now_ms - self._heartbeat_ttl_ms)
                pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis heartbeat failed: {exc}") from exc

    def forget(self, member: str) -> None:
        """Remove this consumer's liveness record on a clean stop."""
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.delete(self._keys.heartbeat(member))
                pipe.zrem(self._keys.heartbeats(), member)
                pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis heartbeat removal failed: {exc}") from exc


class ActivityReader:
    """Reads the index's counts and bitmaps, the day sets' members and consumer heartbeats for the API.

    Counts over several buckets of time are sums over the user buckets: the buckets partition the users, and
    every call touches the keys of one user bucket (one cluster slot) only.
    """

    def __init__(self, client: AsyncClient, keys: KeySchema) -> None:
        self._client = client
        self._keys = keys

    async def active_users(self, days: Sequence[date]) -> dict[date, set[str]]:
        """The set of active user ids of each day (days without data map to an empty set)."""
        return await self._members([self._keys.day(d) for d in days], days)

    async def cardinalities(self, days: Sequence[date]) -> dict[date, int]:
        """How many ids each day's set holds (0 for a day without data), by ``SCARD`` (O(1)) in one round trip."""
        keys = [self._keys.day(d) for d in days]
        replies = await self._guarded(self._send([(key, pack_command(("SCARD", key))) for key in keys]))
        return dict(zip(days, map(int, replies), strict=True))

    async def day_versions(self, days: Sequence[date]) -> dict[date, str | None]:
        """Each day's index version: a token the writer replaces after every acknowledged write of that day's
        bitmaps and counters (``None`` for a day never written), in one round trip. Read it before the data it
        vouches for: a write in between then leaves the old token, so what was read is never taken as newer
        than it is."""
        return await self._fields(self._keys.versions(), days, [self._keys.day_field(day) for day in days])

    async def derived(self, kind: str, days: Sequence[date]) -> dict[date, str | None]:
        """What :meth:`keep_derived` kept of ``kind`` for each day (``None`` where nothing was), in one round trip."""
        return await self._fields(self._keys.derived(), days, [self._keys.derived_field(kind, day) for day in days])

    async def keep_derived(self, kind: str, values: dict[date, str]) -> None:
        """Keep a text of ``kind`` per day for every API process (see :meth:`KeySchema.derived`)."""
        if not values:
            return
        key = self._keys.derived()
        fields = [part for day, text in values.items() for part in (self._keys.derived_field(kind, day), text)]
        await self._guarded(self._send([(key, pack_command(("HSET", key, *fields)))]))

    async def _fields(self, key: str, days: Sequence[date], fields: list[str]) -> dict[date, str | None]:
        """The ``fields`` (one per day) of hash ``key`` (``None`` where there is none), by one ``HMGET``."""
        if not days:
            return {}
        (reply,) = await self._guarded(self._send([(key, pack_command(("HMGET", key, *fields)))]))
        return {day: None if value is None else _text(value) for day, value in zip(days, reply, strict=True)}

    async def day_counters(self, days: Sequence[date]) -> list[tuple[int, ...]]:
        """The counters of each day summed over the user buckets (in the order of ``days``): the users of each
        local hour (``[0]``-``[23]``), of the day (:data:`~activeusers.keys.DAY_SLOT`) and created that day
        (:data:`~activeusers.keys.NEW_SLOT`).

        Each bucket's counts key is 26 big-endian 32-bit counters; read as one big integer, the sum over the
        buckets adds every counter in its own 32 bits (no carry: a total is at most the number of users, far
        below 2**32), so the sum costs one integer addition per bucket and day.
        """
        parts = [self._keys.counts_part(d) for d in days]
        size, calls = self._calls(lambda b: self._keys.in_bucket(b, parts), FETCH_CHUNK)
        replies = await self._guarded(self._send([(keys[0], pack_command(("MGET", *keys))) for _, _, keys in calls]))
        totals = [0] * size
        for (_, offset, _), values in zip(calls, replies, strict=True):
            for position, value in enumerate(values, offset):
                if value:
                    totals[position] += int.from_bytes(value.ljust(COUNTS_BYTES, b"\0"), "big")
        return [struct.unpack(f">{SLOTS}I", total.to_bytes(COUNTS_BYTES, "big")) for total in totals]

    async def day_bitmaps(self, days: Sequence[date]) -> list[list[bytes]]:
        """Each user bucket's bitmap of the users active on each day: ``[bucket][position in days]`` (``b""`` for a
        bitmap that does not exist)."""
        parts = [self._keys.day_part(d) for d in days]
        _, calls = self._calls(lambda b: self._keys.in_bucket(b, parts), FETCH_CHUNK)
        replies = await self._guarded(self._send([(keys[0], pack_command(("MGET", *keys))) for _, _, keys in calls]))
        values: list[list[bytes]] = [[] for _ in range(self._keys.buckets)]
        for (bucket, _, _), reply in zip(calls, replies, strict=True):
            values[bucket] += [value or b"" for value in reply]
        return values

    async def day_union_counts(self, groups: Sequence[Sequence[date]]) -> list[int]:
        """The distinct users active on any day of each group of days, unioned in Redis (:meth:`_union_counts`)."""
        return await self._union_counts([[self._keys.day_part(day) for day in group] for group in groups])

    async def hour_union_counts(self, groups: Sequence[Sequence[tuple[date, int]]]) -> list[int]:
        """The distinct users active in any local hour bucket ``(day, hour)`` of each group, unioned in Redis."""
        return await self._union_counts([[self._keys.hour_part(d, h) for d, h in group] for group in groups])

    async def _union_counts(self, groups: Sequence[Sequence[str]]) -> list[int]:
        """The distinct users of each group of bitmaps, each named by what follows a bucket's tag: one
        :data:`UNION_COUNTS` call per user bucket, the counts summed over the buckets. For a few unions of many
        bitmaps (a range's distinct users, hourly-data's slots), where fetching every bitmap would move
        megabytes; Redis ORs a bucket's bitmaps of a 90-day range (350 kB at the large dataset) in well under a
        millisecond."""
        if not any(groups):
            return [0] * len(groups)
        sizes = [len(group) for group in groups]
        commands: list[Routed] = []
        for bucket in range(self._keys.buckets):
            scratch = self._keys.scratch(bucket)
            keys = [scratch, *self._keys.in_bucket(bucket, [part for group in groups for part in group])]
            commands.append((scratch, pack_command(("EVALSHA", UNION_COUNTS.sha, len(keys), *keys, *sizes))))
        replies = await self._guarded(self._send(commands, (UNION_COUNTS.source,)))
        return [sum(map(int, column)) for column in zip(*replies, strict=True)]

    def _calls(self, keys_of: Callable[[int], list[str]], chunk: int) -> tuple[int, list[tuple[int, int, list[str]]]]:
        """The keys of every user bucket in chunks, as (bucket, position of the first, keys), and how many
        positions ``keys_of`` has."""
        calls: list[tuple[int, int, list[str]]] = []
        size = 0
        for bucket in range(self._keys.buckets):
            keys = keys_of(bucket)
            size = len(keys)
            calls += [(bucket, start, keys[start : start + chunk]) for start in range(0, size, chunk)]
        return size, calls

    async def _send(self, commands: Sequence[Routed], scripts: Sequence[str] = ()) -> list[Any]:
        """Send pre-packed commands (each with its routing key) and return their replies in order; raise the
        first error reply once every reply is read. The one place the reader's batches talk to Redis."""
        # Packed by hiredis in C and sent on pooled connections: a pipeline of 2,000 commands costs redis-py
        # about 60 ms of Python (command objects, reply callbacks); pre-packed, well under 1 ms.
        replies = await send_commands_async(self._client, commands, scripts)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    @staticmethod
    async def _guarded(call: Awaitable[list[Any]]) -> list[Any]:
        try:
            return await call
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis read failed: {exc}") from exc

    async def heartbeats(self) -> dict[str, dict[str, Any]]:
        """The liveness record of every consumer whose heartbeat has not expired, by member id (at most
        ``HEARTBEATS_READ`` of them, the freshest)."""
        try:
            found = await self._client.zrange(self._keys.heartbeats(), 0, HEARTBEATS_READ - 1, desc=True)
            members = cast(list[bytes | str], found)  # without withscores: the members alone
            if not members:
                return {}
            names = [_text(member) for member in members]
            async with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(self._keys.heartbeat(name))
                values = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis read failed: {exc}") from exc
        beats: dict[str, dict[str, Any]] = {}
        for name, value in zip(names, values, strict=True):
            if value is None:
                continue  # expired: the member died without withdrawing it (or its index entry awaits pruning)
            try:
                beat = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue  # a foreign or truncated value says nothing about liveness
            if isinstance(beat, dict):
                beats[name] = beat
        return beats

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers (a Redis Cluster: unless it serves every slot)."""
        try:
            if isinstance(self._client, AsyncRedisCluster):
                info = await self._client.cluster_info()
                state = info.get("cluster_state")
                if state != "ok":
                    raise StoreUnavailable(f"Redis Cluster is not serving every slot: cluster_state {state}")
            else:
                await self._client.ping()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc

    async def _members(self, keys: list[str], labels: Sequence[K]) -> dict[K, set[str]]:
        # Up to READS_IN_FLIGHT pipelines are sent before the first is decoded, so Redis (its own thread, usually
        # another core) serializes the next chunk's members while this process decodes the previous ones.
        found: dict[K, set[str]] = {}
        pending: deque[tuple[asyncio.Task[list[Any]], Sequence[K]]] = deque()
        try:
            for start in range(0, len(keys), READ_CHUNK):
                fetch = asyncio.ensure_future(self._smembers(keys[start : start + READ_CHUNK]))
                pending.append((fetch, labels[start : start + READ_CHUNK]))
                if len(pending) == READS_IN_FLIGHT:
                    fetch, chunk = pending.popleft()
                    found.update(zip(chunk, map(_decoded, await fetch), strict=True))
            while pending:
                fetch, chunk = pending.popleft()
                found.update(zip(chunk, map(_decoded, await fetch), strict=True))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis read failed: {exc}") from exc
        finally:
            for fetch, _ in pending:
                fetch.cancel()
            await asyncio.gather(*(fetch for fetch, _ in pending), return_exceptions=True)
        return found

    async def _smembers(self, keys: list[str]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.smembers(key)
            results: list[Any] = await pipe.execute()
        return results


def _decoded(members: Collection[bytes | str]) -> set[str]:
    # One decode of all members joined by a newline, then a split, when no member contains a newline (checked
    # by counting): about a fifth faster than decoding a day's members one by one, with the same strictness
    # (invalid UTF-8 raises UnicodeDecodeError either way).
    if not members or isinstance(next(iter(members)), str):
        return cast(set[str], set(members))
    raw = cast(Collection[bytes], members)
    joined = b"\n".join(raw)
    if joined.count(b"\n") == len(raw) - 1:
        return set(joined.decode().split("\n"))
    return {member.decode() for member in raw}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
