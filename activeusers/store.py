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
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
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
# dense. Replies the numbers in ARGV order. One HMGET and one HSET for all the ids (each Redis call from Lua costs
# microseconds, and a backfill meets every user once). NUMBER_CHUNK ids bound one call's time on Redis' thread
# (and the arguments of Lua's unpack).
NUMBER_USERS: Final = Script(
    "local n = redis.call('HLEN', KEYS[1]) local known = redis.call('HMGET', KEYS[1], unpack(ARGV)) "
    "local r, given, new = {}, {}, {} "
    "for i, id in ipairs(ARGV) do "
    "if known[i] then r[i] = tonumber(known[i]) elseif given[id] then r[i] = given[id] "
    "else given[id] = n r[i] = n new[#new + 1] = id new[#new + 1] = n n = n + 1 end end "
    "if #new > 0 then redis.call('HSET', KEYS[1], unpack(new)) end "
    "return r"
)
NUMBER_CHUNK = 1000
# A new bitmap's room beyond the bucket's numbered users: for the users numbered later that day (SETBIT past a
# string's end reallocates it with room for as much again).
HEADROOM_MIN_BITS: Final = 64
HEADROOM_SHARE: Final = 64
# One user bucket's share of a batch, in groups of one day. KEYS[1] is the bucket's ids hash; ARGV[1] the number
# of groups. A group is its counts key (KEYS) with "counts expiry, records" (ARGV), then per record a bitmap (KEYS)
# with "counter field, bitmap expiry, offsets" (ARGV; the offsets in decimal, separated by spaces: they reach SETBIT
# as the text they came as, where a number computed in Lua would be formatted back, a printf per bit; one argument
# per record instead of one per bit costs the client's packing less). Each record sets its bits with one SETBIT per
# bit (on redis-server 7.0 cheaper than one BITFIELD for any number of bits: 1.0 against 1.4 us a bit at 2 bits,
# even at 40; a backfill's hour records have 1 to 3) and adds how many were not set before to its counter; the
# group's counters are added by one BITFIELD. Atomic, so a repeated write counts nothing and the counters stay
# exact under replays and concurrent writers (counting needs no BITCOUNT). An expiry of 0 means the writer sent it
# recently: the key is left alone. Otherwise a missing key is created at its full size with its expiry in one SET
# NX EXAT (a bitmap: the bucket's users, HLEN, plus headroom; grown one SETBIT at a time Redis would over-allocate
# it up to 2x), an existing one gets its EXPIREAT; a record whose expiry Redis' own clock has passed is skipped (a
# key created after it would never expire). BITS_CHUNK bits bound one call's time on Redis' thread.
SET_BITS: Final = Script(
    "local k, a, zeros, now = 2, 2, nil, nil "
    "local call, unpack = redis.call, unpack "
    "local function expire(key, at, blank) "
    "if not now then now = tonumber(call('TIME')[1]) end "
    "if tonumber(at) <= now then return false end "
    "if not call('SET', key, blank(), 'NX', 'EXAT', at) then call('EXPIREAT', key, at) end "
    "return true end "
    "local function bitmap() if not zeros then local users = call('HLEN', KEYS[1]) "
    f"local room = math.max({HEADROOM_MIN_BITS}, users / {HEADROOM_SHARE}) "
    "zeros = string.rep('\\0', math.floor((users + room) / 8) + 1) end "
    "return zeros end "
    f"local function counters() return string.rep('\\0', {4 * SLOTS}) end "
    "for g = 1, tonumber(ARGV[1]) do "
    "local counts, at, records, incr, i = KEYS[k], ARGV[a], tonumber(ARGV[a + 1]), {}, 0 k, a = k + 1, a + 2 "
    "for r = 1, records do "
    "local key, offsets, new = KEYS[k], ARGV[a + 2], 0 "
    "if ARGV[a + 1] == '0' or expire(key, ARGV[a + 1], bitmap) then "
    "if not string.find(offsets, ' ', 1, true) then new = 1 - call('SETBIT', key, offsets, '1') else "
    "for b in string.gmatch(offsets, '%d+') do new = new + 1 - call('SETBIT', key, b, '1') end end end "
    "if new > 0 then incr[i + 1] = 'INCRBY' incr[i + 2] = 'u32' incr[i + 3] = ARGV[a] incr[i + 4] = new i = i + 4 end "
    "k, a = k + 1, a + 3 end "
    "if (at == '0' or expire(counts, at, counters)) and i > 0 then call('BITFIELD', counts, unpack(incr)) end "
    "end return 0"
)
BITS_CHUNK = 2000
# Bitmap records after which a batch's calls so far are sent (a backfill batch has thousands): a few more calls,
# and Redis works on them while the client builds the rest.
STREAM_RECORDS = 1500
# Counts the users of unions of one bucket's bitmaps: KEYS[1] is the bucket's scratch key, ARGV[1] how long a kept
# union lives, then per group three ARGV "kept, others, digest" and its keys (KEYS, in order): with kept > 0 first a
# kept union and its label, then its kept bitmaps, then the others. A kept union is the OR of its kept bitmaps, made
# again only when its label does not hold the digest (of what the bitmaps held) and its state (empty, or made: an
# evicted union is made again too; an empty one is left out). The group's union (the kept union and the others) is
# ORed into the scratch key (BITOP; one bitmap is counted as it is), counted (BITCOUNT) and the scratch deleted,
# all inside this call (so concurrent calls never see each other's scratch). Replies the count of each group.
UNION_COUNTS: Final = Script(
    "local counts, k, ttl, call = {}, 2, ARGV[1], redis.call "
    "for g = 2, #ARGV, 3 do local kept, others, parts = tonumber(ARGV[g]), tonumber(ARGV[g + 1]), {} "
    "if kept > 0 then local union, label, made, empty = KEYS[k], KEYS[k + 1], ARGV[g + 2] .. ' made', "
    "ARGV[g + 2] .. ' empty' local state = call('GET', label) "
    "if state ~= empty and not (state == made and call('EXISTS', union) == 1) then state = empty "
    "if call('BITOP', 'OR', union, unpack(KEYS, k + 2, k + 1 + kept)) > 0 then "
    "call('EXPIRE', union, ttl) state = made end "
    "call('SET', label, state, 'EX', ttl) end "
    "if state == made then parts[1] = union end k = k + 2 + kept end "
    "for i = k, k + others - 1 do parts[#parts + 1] = KEYS[i] end k = k + others "
    "local c = 0 if #parts == 1 then c = call('BITCOUNT', parts[1]) elseif #parts > 1 then "
    "call('BITOP', 'OR', KEYS[1], unpack(parts)) c = call('BITCOUNT', KEYS[1]) call('DEL', KEYS[1]) end "
    "counts[#counts + 1] = c end return counts"
)
# How long a kept union lives: the summary's windows end today all day, and a union of 89 past days is made once.
UNION_TTL_S: Final = 86_400
# Keys fetched per MGET (keys of one bucket): a bitmap is about 4 kB at the large dataset, counts 104 bytes, so
# one MGET stays far below a millisecond of Redis' thread.
FETCH_CHUNK = 32
COUNTS_BYTES: Final = 4 * SLOTS
# How many user numbers the writer remembers (about 100 bytes each) before it starts over.
NUMBER_MEMO_USERS = 2_000_000
# A remembered number packs the bucket above the number (a bitmap has at most 2**32 bits).
NUMBER_BITS: Final = 32
NUMBER_MASK: Final = (1 << NUMBER_BITS) - 1

# hiredis's stub types the argument as a one-element tuple; it takes a command of any length.
pack_command = cast(Callable[[tuple[str | int | bytes, ...]], bytes], hiredis.pack_command)

K = TypeVar("K")
# The counters' BITFIELD offsets (``#slot``: the slot-th 32-bit counter), sent as they are.
_COUNTERS: Final = tuple(f"#{slot}" for slot in range(SLOTS))
# A bitmap of a batch: key part, counter, expiry and users.
_Record = tuple[str, int, int, set[str]]


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
    """One :data:`SET_BITS` call of one user bucket: its keys (the ids hash, then per day group its counts key and
    bitmaps) and the groups' arguments."""

    keys: list[str]
    args: list[int | str] = field(default_factory=list)
    groups: int = 0
    bits: int = 0
    # The open group: where its count of records goes in ``args``, and its counts key's place in ``keys``.
    records_at: int = -1
    counts_at: int = 0

    def open(self, counts: str, expire_at: int) -> None:
        """Start a day group: its counts key and that key's expiry (0: sent recently)."""
        self._close()
        self.counts_at = len(self.keys)
        self.keys.append(counts)
        self.records_at = len(self.args) + 1
        self.args += (expire_at, 0)
        self.groups += 1

    def packed(self) -> Routed:
        """The call packed, with its routing key."""
        self._close()
        command = ("EVALSHA", SET_BITS.sha, len(self.keys), *self.keys, self.groups, *self.args)
        return self.keys[0], pack_command(command)

    def _close(self) -> None:
        if self.records_at >= 0:
            self.args[self.records_at] = len(self.keys) - self.counts_at - 1


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
        # user id -> bucket << NUMBER_BITS | number: numbers never change once given, so a memo is always exact.
        self._numbers: dict[str, int] = {}
        self._tags = [keys.tag(bucket) for bucket in range(keys.buckets)]
        self._ids = [keys.ids(bucket) for bucket in range(keys.buckets)]
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
        return {user: (memo[user] >> NUMBER_BITS, memo[user] & NUMBER_MASK) for user in user_ids}

    def _store(self, buckets: Buckets, *, members: bool) -> None:
        now = self._clock()
        expiring: list[tuple[str, int]] = []
        try:
            self._number([user for group in (buckets.days, buckets.created) for u in group.values() for user in u])
            # NOSCRIPT (a new or restarted Redis): the script is loaded and sent again; idempotent, so bits set
            # before count nothing again.
            # The days' new version is set once their bits are: a reader that sees it finds every bit it vouches for.
            commands = self._commands(buckets, members, self._wall(), (now, expiring))
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

    def _commands(
        self, buckets: Buckets, members: bool, wall_s: float, memo: tuple[float, list[tuple[str, int]]]
    ) -> Iterator[Routed]:
        """The batch's commands, built as they are sent: the day sets', then the bits' calls, a few days at a
        time (Redis sets the first days' bits while the next days' calls are built)."""
        if members:
            for day, users in buckets.days.items():
                yield from self._add(self._keys.day(day), users, self._expiry(day, self._member_days), wall_s, memo)
        calls: dict[int, list[_Call]] = {}
        records = 0
        for day, day_records in self._records(buckets).items():
            records += self._bits(calls, day, day_records, wall_s, memo)
            if records >= STREAM_RECORDS:
                yield from (call.packed() for bucket_calls in calls.values() for call in bucket_calls)
                calls, records = {}, 0
        yield from (call.packed() for bucket_calls in calls.values() for call in bucket_calls)

    def _records(self, buckets: Buckets) -> defaultdict[date, list[_Record]]:
        """The bitmaps of the batch per local day: (key part, counter, expiry, users) of its day, hours and
        new users."""
        keys = self._keys
        records: defaultdict[date, list[_Record]] = defaultdict(list)
        for day, users in buckets.days.items():
            records[day].append((keys.day_part(day), DAY_SLOT, self._expiry(day, self._retention_days), users))
        for (day, hour), users in buckets.hours.items():
            records[day].append((keys.hour_part(day, hour), hour, self._expiry(day, self._hour_retention_days), users))
        for day, users in buckets.created.items():
            records[day].append((keys.new_part(day), NEW_SLOT, self._expiry(day, self._retention_days), users))
        return records

    def _number(self, users: Collection[str]) -> None:
        """Make sure every user of ``users`` has its number in the memo: one round trip for the unknown ones."""
        memo = self._numbers
        if len(memo) + len(users) > NUMBER_MEMO_USERS:
            memo.clear()
        buckets = self._keys.buckets
        unknown: defaultdict[int, set[str]] = defaultdict(set)
        for user in [user for user in users if user not in memo]:
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
                memo[user] = bucket << NUMBER_BITS | int(number)

    def _expiry(self, day: date, retention_days: int) -> int:
        found = self._expiry_of.get((day, retention_days))
        if found is None:
            if len(self._expiry_of) > EXPIRY_MEMO_KEYS:
                self._expiry_of.clear()
            found = self._expiry_of[(day, retention_days)] = day_expiry_s(day, self._zone, retention_days)
        return found

    def _send(self, commands: Iterable[Routed], scripts: Sequence[str] = (), then: Routed | None = None) -> list[Any]:
        """Send pre-packed commands (each with its routing key, built as they are sent when a generator; ``then``
        after they took effect) and return their replies in order; raise the first error reply once every reply
        is read. The one place that talks to Redis for batches."""
        # Pre-packed and sent in one write per Redis node: redis-py's Pipeline spends microseconds of Python per
        # command on bookkeeping and reply callbacks, and a backfill batch sends hundreds of commands: this halves
        # the client's CPU per stored event (measured 1.5 us -> 0.8 us), on the store worker's busy core.
        replies = send_commands(self._client, commands, scripts, then)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _add(
        self, key: str, users: set[str], expire_at: int, wall_s: float, memo: tuple[float, list[tuple[str, int]]]
    ) -> Iterator[Routed]:
        if expire_at <= wall_s:
            return  # past this key's retention: an old event still counts in the index, but lists no member
        members = list(users)
        for start in range(0, len(members), SADD_CHUNK):
            yield key, pack_command(("SADD", key, *members[start : start + SADD_CHUNK]))
        if self._due(key, expire_at, *memo):
            yield key, pack_command(("EXPIREAT", key, expire_at))

    def _bits(
        self,
        calls: dict[int, list[_Call]],
        day: date,
        records: list[_Record],
        wall_s: float,
        memo: tuple[float, list[tuple[str, int]]],
    ) -> int:
        """Add the ``records`` of ``day`` to each user bucket's calls: one group per bucket (its counts key), one
        record per bitmap of the bucket, the users' bits. Past its retention a bitmap is not written. ``memo``:
        now and the keys whose expiry is sent (see :meth:`_due`)."""
        numbers_of = self._numbers.__getitem__
        found: list[list[tuple[str, int, int, list[int]]]] = [[] for _ in self._tags]
        owner = [-1] * len(self._tags)
        current: list[list[int]] = [[] for _ in self._tags]
        for record, (part, slot, expire_at, users) in enumerate(records):
            if expire_at <= wall_s:
                continue
            if len(users) == 1:  # most hour records of a backfill batch
                number = numbers_of(next(iter(users)))
                found[number >> NUMBER_BITS].append((part, slot, expire_at, [number & NUMBER_MASK]))
                continue
            for user in users:
                packed = numbers_of(user)
                bucket = packed >> NUMBER_BITS
                if owner[bucket] == record:
                    current[bucket].append(packed & NUMBER_MASK)
                else:
                    owner[bucket] = record
                    numbers = current[bucket] = [packed & NUMBER_MASK]
                    found[bucket].append((part, slot, expire_at, numbers))
        counts_part = self._keys.counts_part(day)
        counts_until = self._expiry(day, self._retention_days)
        added = 0
        for bucket, bitmaps in enumerate(found):
            if bitmaps:
                self._group(calls, bucket, self._tags[bucket] + counts_part, counts_until, bitmaps, memo)
                added += len(bitmaps)
        return added

    def _group(
        self,
        calls: dict[int, list[_Call]],
        bucket: int,
        counts: str,
        counts_until: int,
        bitmaps: list[tuple[str, int, int, list[int]]],
        memo: tuple[float, list[tuple[str, int]]],
    ) -> None:
        """Add one bucket's records of a day to its calls (a new call when one would pass BITS_CHUNK)."""
        tag = self._tags[bucket]
        counts_at = self._due(counts, counts_until, *memo)
        bucket_calls = calls.setdefault(bucket, [])
        call = bucket_calls[-1] if bucket_calls else None
        opened = False
        for part, slot, expire_at, numbers in bitmaps:
            key = tag + part
            at = self._due(key, expire_at, *memo)
            for chunk in _chunks(numbers):
                if call is None or call.bits + len(chunk) > BITS_CHUNK:
                    call = _Call([self._ids[bucket]])
                    bucket_calls.append(call)
                    opened = False
                if not opened:
                    call.open(counts, counts_at)
                    opened = True
                call.keys.append(key)
                call.args += (_COUNTERS[slot], at, str(chunk[0]) if len(chunk) == 1 else " ".join(map(str, chunk)))
                call.bits += len(chunk)

    def _due(self, key: str, expire_at: int, now: float, expiring: list[tuple[str, int]]) -> int:
        """``expire_at`` if ``key``'s expiry is to be sent with this batch, else 0 (sent recently).

        Each command costs Redis (and a backfill batch touches thousands of keys): a key's (deterministic)
        expiry is sent once and then again only every EXPIRY_REFRESH_S, which also restores it on a key that lost
        it (a Redis restarted without persistence, a manual PERSIST)."""
        sent = self._expiry_sent.get(key)
        if sent is not None and sent[0] == expire_at and now - sent[1] < EXPIRY_REFRESH_S:
            return 0
        expiring.append((key, expire_at))
        return expire_at

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
        size, calls, replies = await self._mget(parts)
        totals = [0] * size
        for (_, offset, _), values in zip(calls, replies, strict=True):
            for position, value in enumerate(values, offset):
                if value:
                    totals[position] += int.from_bytes(value.ljust(COUNTS_BYTES, b"\0"), "big")
        return [struct.unpack(f">{SLOTS}I", total.to_bytes(COUNTS_BYTES, "big")) for total in totals]

    async def day_bitmaps(self, days: Sequence[date]) -> list[list[bytes]]:
        """Each user bucket's bitmap of the users active on each day: ``[bucket][position in days]`` (``b""`` for a
        bitmap that does not exist)."""
        _, calls, replies = await self._mget([self._keys.day_part(d) for d in days])
        values: list[list[bytes]] = [[] for _ in range(self._keys.buckets)]
        for (bucket, _, _), reply in zip(calls, replies, strict=True):
            values[bucket] += [value or b"" for value in reply]
        return values

    async def day_union_counts(
        self, groups: Sequence[Sequence[date]], kept: Sequence[tuple[int, str] | None] = ()
    ) -> list[int]:
        """The distinct users active on any day of each group of days, unioned in Redis (:meth:`_union_counts`).

        ``kept[i]`` ``(n, digest)``: the first ``n`` days of group ``i`` (consecutive) are unioned once and the
        union kept in Redis, under ``digest`` (of what those days hold: it is made again when it differs)."""
        specs: list[tuple[int, str, str, str] | None] = []
        for group, spec in itertools.zip_longest(groups, kept[: len(groups)]):
            if spec is None or spec[0] < 1:
                specs.append(None)
                continue
            first, last = group[0], group[spec[0] - 1]
            specs.append(
                (spec[0], spec[1], self._keys.union_part(first, last), self._keys.union_label_part(first, last))
            )
        return await self._union_counts([[self._keys.day_part(day) for day in group] for group in groups], specs)

    async def hour_union_counts(self, groups: Sequence[Sequence[tuple[date, int]]]) -> list[int]:
        """The distinct users active in any local hour bucket ``(day, hour)`` of each group, unioned in Redis."""
        return await self._union_counts([[self._keys.hour_part(d, h) for d, h in group] for group in groups])

    async def _union_counts(
        self, groups: Sequence[Sequence[str]], kept: Sequence[tuple[int, str, str, str] | None] = ()
    ) -> list[int]:
        """The distinct users of each group of bitmaps, each named by what follows a bucket's tag: one
        :data:`UNION_COUNTS` call per user bucket, the counts summed over the buckets. For a few unions of many
        bitmaps (a range's distinct users, hourly-data's slots), where fetching every bitmap would move
        megabytes; Redis ORs a bucket's bitmaps of a 90-day range (350 kB at the large dataset) in well under a
        millisecond. ``kept[i]`` ``(n, digest, union, label)``: the first ``n`` parts of group ``i`` are read
        from the union they make, kept under the parts ``union`` and ``label`` while ``digest`` holds."""
        if not any(groups):
            return [0] * len(groups)
        args: list[int | str] = [UNION_TTL_S]
        parts: list[str] = []
        for group, spec in itertools.zip_longest(groups, kept[: len(groups)]):
            if spec is None:
                args += (0, len(group), "")
                parts += group
            else:
                size, digest, union, label = spec
                args += (size, len(group) - size, digest)
                parts += (union, label, *group)
        commands: list[Routed] = []
        for bucket in range(self._keys.buckets):
            scratch = self._keys.scratch(bucket)
            keys = [scratch, *self._keys.in_bucket(bucket, parts)]
            commands.append((scratch, pack_command(("EVALSHA", UNION_COUNTS.sha, len(keys), *keys, *args))))
        replies = await self._guarded(self._send(commands, (UNION_COUNTS.source,)))
        return [sum(map(int, column)) for column in zip(*replies, strict=True)]

    async def _mget(self, parts: list[str]) -> tuple[int, list[tuple[int, int, list[str]]], list[Any]]:
        """``MGET`` of the keys of ``parts`` (what follows a bucket's tag) in every user bucket, FETCH_CHUNK keys
        per command: how many parts, the calls as (bucket, position of the first, keys), and their replies."""
        calls: list[tuple[int, int, list[str]]] = []
        for bucket in range(self._keys.buckets):
            keys = self._keys.in_bucket(bucket, parts)
            calls += [(bucket, start, keys[start : start + FETCH_CHUNK]) for start in range(0, len(keys), FETCH_CHUNK)]
        replies = await self._guarded(self._send([(keys[0], pack_command(("MGET", *keys))) for _, _, keys in calls]))
        return len(parts), calls, replies

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


def _chunks(numbers: list[int]) -> Sequence[list[int]]:
    """``numbers`` in slices of at most BITS_CHUNK."""
    if len(numbers) <= BITS_CHUNK:
        return (numbers,)
    return [numbers[start : start + BITS_CHUNK] for start in range(0, len(numbers), BITS_CHUNK)]


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
