"""Reading and writing activity data in Redis, through the key schema of :mod:`activeusers.keys`.

The consumer writes with :class:`ActivityWriter` (blocking redis-py, since the consumer is a blocking process);
the API reads with :class:`ActivityReader` (redis-py's asyncio client). Writes are set additions with
deterministic expiry times, so repeating a write (at-least-once delivery, replays) changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypeVar, cast

import hiredis
import orjson
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from activeusers.days import day_expiry_s
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.redisconn import REDIS_ERRORS, AsyncClient, SyncClient, send_commands, send_commands_async
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
    """A read-only Lua script of the reader, called by its SHA-1 (Redis' name for it, not a security measure)."""

    source: str

    @property
    def sha(self) -> str:
        """The name Redis knows the script by."""
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


# SCARD of every key given, replies in key order. A chunk of COUNT_CHUNK keys bounds one call's time on Redis'
# thread (SCARD is O(1): about a millisecond per chunk).
SCARDS: Final = Script("local r = {} for i, k in ipairs(KEYS) do r[i] = redis.call('SCARD', k) end return r")
# ARGV[i] keys after the previous groups' form group i; its reply is the size of their union (0 for no keys), by
# inclusion-exclusion over the group's subsets: SCARD of one set, SINTERCARD of more, counts only. (A SUNION would
# copy every member into a Lua table: measured 12 ms for a day's 12 slots at 10k daily active, against under 1.)
UNION_SIZES: Final = Script(
    "local r, k = {}, 1 "
    "for i, n in ipairs(ARGV) do n = tonumber(n) local total = 0 "
    "for mask = 1, 2 ^ n - 1 do local sub, m = {}, mask "
    "for j = 0, n - 1 do if m % 2 == 1 then sub[#sub + 1] = KEYS[k + j] end m = math.floor(m / 2) end "
    "local c if #sub == 1 then c = redis.call('SCARD', sub[1]) "
    "else c = redis.call('SINTERCARD', #sub, unpack(sub)) end "
    "if #sub % 2 == 1 then total = total + c else total = total - c end end "
    "r[i] = total k = k + n end return r"
)
COUNT_CHUNK = 2048

# hiredis's stub types the argument as a one-element tuple; it takes a command of any length.
pack_command = cast(Callable[[tuple[str | int, ...]], bytes], hiredis.pack_command)

K = TypeVar("K")


@dataclass(slots=True)
class Buckets:
    """Distinct user ids per bucket accumulated from one batch of events, ready to be written at once."""

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


class ActivityWriter:
    """Writes batches of buckets, expiry included, in one pipelined round trip."""

    def __init__(
        self, client: SyncClient, keys: KeySchema, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._keys = keys
        self._zone = settings.zone
        self._retention_days = settings.retention_days
        self._hour_retention_days = settings.hour_retention_days
        self._clock = clock
        self._expiry_of: dict[tuple[date, int], int] = {}
        self._expiry_sent: dict[str, tuple[int, float]] = {}
        self._heartbeat_ttl_ms = max(1, int(settings.consumer_stale_s * 1000))

    def write(self, buckets: Buckets) -> None:
        """Store every bucket of the batch; raise :class:`StoreUnavailable` if Redis fails (nothing is partial
        in a harmful way: a retry of the same batch converges to the same state)."""
        commands: list[bytes] = []
        routes: list[str] = []
        now = self._clock()
        expiring: list[tuple[str, int]] = []
        for day, users in buckets.days.items():
            expiry = self._expiry(day, self._retention_days)
            self._add(commands, routes, self._keys.day(day), users, expiry, now, expiring)
        for (day, hour), users in buckets.hours.items():
            expiry = self._expiry(day, self._hour_retention_days)
            self._add(commands, routes, self._keys.hour(day, hour), users, expiry, now, expiring)
        for day, users in buckets.created.items():
            expiry = self._expiry(day, self._retention_days)
            self._add(commands, routes, self._keys.new_users(day), users, expiry, now, expiring)
        try:
            self._send(commands, routes)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis write failed: {exc}") from exc
        if len(self._expiry_sent) > EXPIRY_MEMO_KEYS:
            self._expiry_sent.clear()
        for key, expire_at in expiring:
            self._expiry_sent[key] = (expire_at, now)

    def _expiry(self, day: date, retention_days: int) -> int:
        found = self._expiry_of.get((day, retention_days))
        if found is None:
            if len(self._expiry_of) > EXPIRY_MEMO_KEYS:
                self._expiry_of.clear()
            found = self._expiry_of[(day, retention_days)] = day_expiry_s(day, self._zone, retention_days)
        return found

    def _send(self, commands: list[bytes], routes: list[str]) -> None:
        # The batch as pre-packed commands (one write per Redis node, replies read in order): redis-py's Pipeline
        # spends microseconds of Python per command on bookkeeping and reply callbacks, and a backfill batch sends
        # hundreds of commands: this halves the client's CPU per stored event (measured 1.5 us -> 0.8 us), on the
        # store worker's busy core.
        for reply in send_commands(self._client, list(zip(routes, commands, strict=True))):
            if isinstance(reply, Exception):
                raise reply

    def _add(
        self,
        commands: list[bytes],
        routes: list[str],
        key: str,
        users: set[str],
        expire_at: int,
        now: float,
        expiring: list[tuple[str, int]],
    ) -> None:
        members = list(users)
        for start in range(0, len(members), SADD_CHUNK):
            commands.append(pack_command(("SADD", key, *members[start : start + SADD_CHUNK])))
            routes.append(key)
        # Each command costs the client microseconds of Python, and a backfill batch touches hundreds of hour
        # keys: a key's (deterministic) expiry is sent once and then again only every EXPIRY_REFRESH_S, which
        # also restores it on a key that lost it (a Redis restarted without persistence, a manual PERSIST).
        sent = self._expiry_sent.get(key)
        if sent is None or sent[0] != expire_at or now - sent[1] >= EXPIRY_REFRESH_S:
            commands.append(pack_command(("EXPIREAT", key, expire_at)))
            routes.append(key)
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
    """Reads day and hour buckets and consumer heartbeats for the API."""

    def __init__(self, client: AsyncClient, keys: KeySchema) -> None:
        self._client = client
        self._keys = keys

    async def active_users(self, days: Sequence[date]) -> dict[date, set[str]]:
        """The set of active user ids of each day (days without data map to an empty set)."""
        return await self._members([self._keys.day(d) for d in days], days)

    async def cardinalities(self, days: Sequence[date]) -> dict[date, int]:
        """How many users each day's set holds (0 for a day without data), in one pipelined round trip.

        ``SCARD`` is O(1) in Redis, so even the longest range (the retention window) is one cheap pipeline.
        """
        return dict(zip(days, await self._counts([self._keys.day(d) for d in days]), strict=True))

    async def new_user_counts(self, days: Sequence[date]) -> dict[date, int]:
        """How many users were created on each day (0 for a day without data), by ``SCARD``."""
        return dict(zip(days, await self._counts([self._keys.new_users(d) for d in days]), strict=True))

    async def hour_counts(self, hours: Sequence[tuple[date, int]]) -> dict[tuple[date, int], int]:
        """How many users each local hour bucket ``(day, hour)`` holds (0 without data), by ``SCARD``."""
        return dict(zip(hours, await self._counts([self._keys.hour(d, h) for d, h in hours]), strict=True))

    async def hour_union_counts(self, groups: Sequence[Sequence[tuple[date, int]]]) -> list[int]:
        """The number of distinct users in the union of each group of hour buckets, in one round trip.

        A script counts the unions inside Redis by inclusion-exclusion (``SCARD`` and ``SINTERCARD``), so no
        member is copied or sent. A group is meant to be small (a two-hour slot: two buckets, three around a DST
        change; it costs ``2**len(group) - 1`` counts); an empty group counts 0.
        """
        keys = [self._keys.hour(d, h) for group in groups for d, h in group]
        try:
            sizes = await self._eval(UNION_SIZES, keys, [len(group) for group in groups])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis read failed: {exc}") from exc
        return [int(size) for size in sizes]

    async def _counts(self, keys: list[str]) -> list[int]:
        if not keys:
            return []
        # Chunks go one after the other: only ranges longer than COUNT_CHUNK keys, such as hours of a long hour
        # retention, take more than one round trip.
        counts: list[int] = []
        try:
            for start in range(0, len(keys), COUNT_CHUNK):
                counts += map(int, await self._eval(SCARDS, keys[start : start + COUNT_CHUNK]))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis read failed: {exc}") from exc
        return counts

    async def _eval(self, script: Script, keys: list[str], args: Sequence[int] = ()) -> list[Any]:
        # One script call instead of one command per key, packed by hiredis in C and sent on a pooled connection:
        # a pipeline of 2,000 SCARDs costs redis-py about 60 ms of Python (command objects, reply callbacks), and
        # even one EVALSHA of 2,000 keys about 8 ms when redis-py packs it; pre-packed, well under 1 ms.
        # A new or restarted Redis answers NOSCRIPT: the script is loaded, then asked again.
        packed = pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        (reply,) = await send_commands_async(self._client, [(keys[0] if keys else "", packed)], [script.source])
        if isinstance(reply, Exception):
            raise reply
        return cast(list[Any], reply)

    async def load_scripts(self) -> None:
        """Load the reader's script into Redis ahead of the first request (raises :class:`StoreUnavailable`)."""
        try:
            for script in (SCARDS, UNION_SIZES):
                await self._client.script_load(script.source)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis script load failed: {exc}") from exc

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
