"""Reading and writing activity data in Redis, through the key schema of :mod:`activeusers.keys`.

The consumer writes with :class:`ActivityWriter` (blocking redis-py, since the consumer is a blocking process);
the API reads with :class:`ActivityReader` (redis-py's asyncio client). Writes are set additions with
deterministic expiry times, so repeating a write (at-least-once delivery, replays) changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import struct
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypeVar, cast

import hiredis
import orjson
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from activeusers.days import day_expiry_s
from activeusers.errors import ConfigError, StoreUnavailable
from activeusers.keys import DAY_SLOT, NEW_SLOT, SLOTS, KeySchema, bucket_of
from activeusers.settings import Settings, redacted_url

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
# One user bucket's share of a batch (KEYS: that bucket's bitmaps and counts keys). ARGV[1] is the number of bit
# records, each "bitmap, counts key (KEYS indexes), counter, n, n bit offsets": the script sets the bits and adds
# how many were not set before to the counter, atomically, so a repeated write counts nothing and the counters
# stay exact under replays and concurrent writers (counting needs no BITCOUNT). Pairs "key index, expiry" follow
# (EXPIREAT after the bits, when the key exists). BITS_CHUNK bits bound one call's time on Redis' thread.
SET_BITS: Final = Script(
    "local a = 2 for _ = 1, tonumber(ARGV[1]) do "
    "local key, counts, n, new = KEYS[tonumber(ARGV[a])], KEYS[tonumber(ARGV[a + 1])], tonumber(ARGV[a + 3]), 0 "
    "for i = a + 4, a + 3 + n do if redis.call('SETBIT', key, ARGV[i], 1) == 0 then new = new + 1 end end "
    "if new > 0 then redis.call('BITFIELD', counts, 'INCRBY', 'u32', '#' .. ARGV[a + 2], new) end a = a + 4 + n end "
    "while a < #ARGV do redis.call('EXPIREAT', KEYS[tonumber(ARGV[a])], ARGV[a + 1]) a = a + 2 end return 0"
)
BITS_CHUNK = 2000
SCRIPTS: Final = (NUMBER_USERS, SET_BITS)
# Keys fetched per MGET (keys of one bucket): a bitmap is about a kilobyte at the large dataset, counts 104 bytes.
FETCH_CHUNK = 256
COUNTS_BYTES: Final = 4 * SLOTS
# How many user numbers the writer remembers (about 100 bytes each) before it starts over.
NUMBER_MEMO_USERS = 2_000_000
# A remembered number packs the bucket into its low bits (USER_BUCKETS is at most 2**BUCKET_BITS).
BUCKET_BITS: Final = 14
BUCKET_MASK: Final = (1 << BUCKET_BITS) - 1

REDIS_ERRORS = (redis.RedisError, OSError)
# hiredis's stub types the argument as a one-element tuple; it takes a command of any length.
pack_command = cast(Callable[[tuple[str | int, ...]], bytes], hiredis.pack_command)
# A packed command with its routing key (its first key: the one a Redis Cluster client sends it by).
Routed = tuple[str, bytes]

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


# redis-py's default retries a dead connection several times with growing sleeps, which multiplies the
# configured timeout; callers here have their own retry policy (the consumer) or must answer fast (the API).
_QUICK_BACKOFF = {"cap": 0.05, "base": 0.01}


def redis_security(settings: Settings) -> dict[str, Any]:
    """The credentials and TLS keyword arguments of every Redis client (sync and asyncio): the ACL user and
    password, and for ``rediss://`` the CA, the optional client certificate and host-name checking."""
    kwargs: dict[str, Any] = {}
    if settings.redis_username:
        kwargs["username"] = settings.redis_username
    if settings.redis_password:
        kwargs["password"] = settings.redis_password.reveal()
    if settings.redis_url.startswith("rediss://"):
        kwargs.update(
            ssl_cert_reqs="required",
            ssl_check_hostname=settings.redis_ssl_check_hostname,
            ssl_ca_certs=settings.redis_ssl_ca_file or None,
            ssl_certfile=settings.redis_ssl_cert_file or None,
            ssl_keyfile=settings.redis_ssl_key_file or None,
            ssl_password=settings.redis_ssl_key_password.reveal() or None,
        )
    return kwargs


def redis_client(settings: Settings) -> redis.Redis:
    """A blocking client with the bounded timeouts and the security of the settings."""
    client: redis.Redis = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(**_QUICK_BACKOFF), retries=1),
        **redis_security(settings),
    )
    return client


def async_redis_client(settings: Settings) -> aioredis.Redis:
    """An asyncio client (connection pool) with the bounded timeouts and the security of the settings."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        retry=AsyncRetry(ExponentialBackoff(**_QUICK_BACKOFF), retries=1),
        **redis_security(settings),
    )
    return client


def check_redis(settings: Settings) -> None:
    """One PING at start-up (bounded by REDIS_TIMEOUT): raise :class:`ConfigError` naming the setting when the
    credentials, the certificates or TLS itself do not match the server. A server that is merely unreachable
    is left to the caller's retries (it may be starting)."""
    client = redis_client(settings)
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        problem = redis_config_problem(settings, exc)
        if problem is None and settings.redis_url.startswith("rediss://"):
            if _answers_plaintext(settings):
                problem = f"REDIS_URL: Redis at {redacted_url(settings.redis_url)} does not speak TLS; use redis://"
            elif (refusal := _tls_refusal(settings)) is not None:
                problem = redis_config_problem(settings, redis.ConnectionError(refusal))
        if problem is not None:
            raise ConfigError(problem) from None
    finally:
        client.close()


def redis_config_problem(settings: Settings, exc: BaseException) -> str | None:
    """What a failed first command says about the configuration (``None``: nothing, the server is just down)."""
    where = f"Redis at {redacted_url(settings.redis_url)}"
    text = str(exc)
    tls = settings.redis_url.startswith("rediss://")
    has_password = bool(settings.redis_password) or "@" in settings.redis_url.split("://", 1)[-1].split("/", 1)[0]
    if "NOAUTH" in text or (isinstance(exc, redis.AuthenticationError) and not has_password):
        return f"REDIS_PASSWORD: {where} requires authentication; set REDIS_USERNAME and REDIS_PASSWORD"
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text:
        return f"REDIS_USERNAME/REDIS_PASSWORD: {where} refused the credentials ({_first_line(text)})"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        if "mismatch" in text:
            return f"REDIS_SSL_CHECK_HOSTNAME: the certificate of {where} is not for its host ({_first_line(text)})"
        return f"REDIS_SSL_CA_FILE: the certificate of {where} is not signed by a trusted CA ({_first_line(text)})"
    if tls and ("PEM lib" in text or "KEY_VALUES_MISMATCH" in text or "bad decrypt" in text):
        return (
            "REDIS_SSL_CERT_FILE/REDIS_SSL_KEY_FILE: the client certificate and key cannot be loaded (a PEM "
            f"certificate and its key, REDIS_SSL_KEY_PASSWORD when the key is encrypted): {_first_line(text)}"
        )
    if tls and ("CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text):
        return f"REDIS_SSL_CERT_FILE/REDIS_SSL_KEY_FILE: {where} requires a client certificate it trusts"
    if tls and ("WRONG_VERSION_NUMBER" in text or "record layer" in text):
        return f"REDIS_URL: {where} does not speak TLS; use redis:// for a plaintext server"
    if not tls and ("Connection reset by peer" in text or "Connection closed by server" in text):
        return f"REDIS_URL: {where} closed the connection on a plaintext command; a TLS port needs rediss://"
    return None


def _tls_refusal(settings: Settings) -> str | None:
    """The TLS alert a ``rediss://`` server sends right after the handshake, if any.

    With TLS 1.3 a server refuses a missing or untrusted client certificate only after the client's handshake
    is done, so a client that writes first may see a bare EOF instead; waiting for the server's first bytes
    shows the alert itself."""
    url = urllib.parse.urlsplit(settings.redis_url)
    host = url.hostname or "localhost"
    try:
        context = ssl.create_default_context(cafile=settings.redis_ssl_ca_file or None)
        context.check_hostname = settings.redis_ssl_check_hostname
        if settings.redis_ssl_cert_file:
            context.load_cert_chain(
                settings.redis_ssl_cert_file,
                settings.redis_ssl_key_file or None,
                password=settings.redis_ssl_key_password.reveal() or None,
            )
        with (
            socket.create_connection((host, url.port or 6379), timeout=settings.redis_timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.settimeout(min(1.0, settings.redis_timeout_s))
            sock.recv(1)
    except ssl.SSLError as exc:
        return str(exc)
    except OSError:
        return None
    return None


def _answers_plaintext(settings: Settings) -> bool:
    """Whether the server of a ``rediss://`` URL answers a plaintext PING (so it is not a TLS port)."""
    url = urllib.parse.urlsplit(settings.redis_url)
    try:
        with socket.create_connection(
            (url.hostname or "localhost", url.port or 6379), timeout=settings.redis_timeout_s
        ) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH", b"-ERR"))
    except OSError:
        return False


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no detail"


class _BucketCall:
    """One user bucket's share of a batch, as the arguments of :data:`SET_BITS` calls (``BITS_CHUNK`` bits each)."""

    __slots__ = ("calls", "expiries", "index", "keys", "tag")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.calls: list[_Call] = [_Call()]
        self.expiries: list[int] = []

    def key(self, part: str) -> int:
        """The KEYS index (1-based) of this bucket's key ``part``."""
        found = self.index.get(part)
        if found is None:
            self.keys.append(self.tag + part)
            found = self.index[part] = len(self.keys)
        return found

    def add(self, bitmap: int, counts: int, slot: int, numbers: list[int]) -> None:
        """Set the bits ``numbers`` of KEYS[bitmap] and count the new ones in counter ``slot`` of KEYS[counts]."""
        for start in range(0, len(numbers), BITS_CHUNK):
            chunk = numbers[start : start + BITS_CHUNK]
            call = self.calls[-1]
            if call.bits and call.bits + len(chunk) > BITS_CHUNK:
                call = _Call()
                self.calls.append(call)
            call.records += 1
            call.bits += len(chunk)
            call.args += (bitmap, counts, slot, len(chunk), *chunk)

    def commands(self) -> list[Routed]:
        """The packed script calls (the expiries go with the last, after every bit is set)."""
        self.calls[-1].args += self.expiries
        return [
            (self.keys[0], pack_command(("EVALSHA", SET_BITS.sha, len(self.keys), *self.keys, c.records, *c.args)))
            for c in self.calls
        ]


@dataclass(slots=True)
class _Call:
    """The arguments of one :data:`SET_BITS` call after KEYS and the record count."""

    bits: int = 0
    records: int = 0
    args: list[int] = field(default_factory=list)


class ActivityWriter:
    """Writes batches of buckets, expiry included: the day sets and the index's bitmaps in one pipelined round
    trip, after one more for the numbers of users it has not seen before."""

    def __init__(
        self,
        client: redis.Redis,
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
        self._heartbeat_ttl_ms = max(1, int(settings.consumer_stale_s * 1000))

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
        calls: dict[int, _BucketCall] = {}
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
                self._bits(calls, (keys.day_part(day), counts, DAY_SLOT), users, (long, long), wall_s, now, expiring)
            for (day, hour), users in buckets.hours.items():
                hour_expiry = (self._expiry(day, self._hour_retention_days), self._expiry(day, self._retention_days))
                target = (keys.hour_part(day, hour), keys.counts_part(day), hour)
                self._bits(calls, target, users, hour_expiry, wall_s, now, expiring)
            for day, users in buckets.created.items():
                long = self._expiry(day, self._retention_days)
                target = (keys.new_part(day), keys.counts_part(day), NEW_SLOT)
                self._bits(calls, target, users, (long, long), wall_s, now, expiring)
            for call in calls.values():
                commands += call.commands()
            try:
                self._send(commands)
            except redis.exceptions.NoScriptError:  # a new or restarted Redis: load the script, send it again
                self._client.script_load(SET_BITS.source)
                self._send(commands)  # idempotent: bits set before count nothing again
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis write failed: {exc}") from exc
        if len(self._expiry_sent) > EXPIRY_MEMO_KEYS:
            self._expiry_sent.clear()
        for key, expire_at in expiring:
            self._expiry_sent[key] = (expire_at, now)

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
        try:
            replies = self._send(commands)
        except redis.exceptions.NoScriptError:  # a new or restarted Redis: load the script once, then ask again
            self._client.script_load(NUMBER_USERS.source)
            replies = self._send(commands)
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

    def _send(self, commands: Sequence[Routed]) -> list[Any]:
        """Send pre-packed commands (each with its routing key) and return their replies in order; raise the
        first error reply once every reply is read. The one place that talks to Redis for batches."""
        # The batch as pre-packed commands, sent in one write on one pooled connection, replies read in order.
        # redis-py's Pipeline spends microseconds of Python per command on bookkeeping and reply callbacks, and a
        # backfill batch sends hundreds of commands: this halves the client's CPU per stored event (measured
        # 1.5 us -> 0.8 us), on the store worker's busy core.
        if not commands:
            return []
        pool = self._client.connection_pool
        connection = pool.get_connection()
        replies: list[Any] = []
        try:
            connection.send_packed_command([b"".join(packed for _, packed in commands)])  # type: ignore[no-untyped-call]
            refused: list[redis.ResponseError] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:  # read every reply, so the connection stays in step
                    refused.append(exc)
                    replies.append(exc)
            if refused:
                raise refused[0]
        finally:
            pool.release(connection)
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
        calls: dict[int, _BucketCall],
        target: tuple[str, str, int],
        users: set[str],
        expiry: tuple[int, int],
        wall_s: float,
        now: float,
        expiring: list[tuple[str, int]],
    ) -> None:
        """Set the bits of ``users`` in the bitmaps of ``target`` (key part, counts key part, counter) of their
        buckets; ``expiry``: the bitmap's and the counts key's. Past its retention a bitmap is not written."""
        if expiry[0] <= wall_s:
            return
        part, counts_part, slot = target
        memo = self._numbers
        offsets: defaultdict[int, list[int]] = defaultdict(list)
        for user in users:
            packed = memo[user]
            offsets[packed & BUCKET_MASK].append(packed >> BUCKET_BITS)
        keys = self._keys
        for bucket, numbers in offsets.items():
            call = calls.get(bucket)
            if call is None:
                call = calls[bucket] = _BucketCall(keys.tag(bucket))
            bitmap, counts = call.key(part), call.key(counts_part)
            call.add(bitmap, counts, slot, numbers)
            for index, expire_at in ((bitmap, expiry[0]), (counts, expiry[1])):
                key = call.keys[index - 1]
                if self._expiry_due(key, expire_at, now):
                    call.expiries += (index, expire_at)
                    expiring.append((key, expire_at))

    def _expire(
        self, commands: list[Routed], key: str, expire_at: int, now: float, expiring: list[tuple[str, int]]
    ) -> None:
        if self._expiry_due(key, expire_at, now):
            commands.append((key, pack_command(("EXPIREAT", key, expire_at))))
            expiring.append((key, expire_at))

    def _expiry_due(self, key: str, expire_at: int, now: float) -> bool:
        # Each command costs the client microseconds of Python, and a backfill batch touches hundreds of keys: a
        # key's (deterministic) expiry is sent once and then again only every EXPIRY_REFRESH_S, which also
        # restores it on a key that lost it (a Redis restarted without persistence, a manual PERSIST).
        sent = self._expiry_sent.get(key)
        return sent is None or sent[0] != expire_at or now - sent[1] >= EXPIRY_REFRESH_S

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

    def __init__(self, client: aioredis.Redis, keys: KeySchema) -> None:
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

    async def day_counts(self, days: Sequence[date]) -> dict[date, int]:
        """Distinct users active on each day (0 for a day without data), from the index's counters."""
        return dict(zip(days, (counters[DAY_SLOT] for counters in await self._counters(days)), strict=True))

    async def new_user_counts(self, days: Sequence[date]) -> dict[date, int]:
        """How many users were created on each day (0 for a day without data), from the index's counters."""
        return dict(zip(days, (counters[NEW_SLOT] for counters in await self._counters(days)), strict=True))

    async def hour_counts(self, hours: Sequence[tuple[date, int]]) -> dict[tuple[date, int], int]:
        """Distinct users of each local hour bucket ``(day, hour)`` (0 without data), from the index's counters."""
        days = sorted({day for day, _ in hours})
        counters = dict(zip(days, await self._counters(days), strict=True))
        return {(day, hour): counters[day][hour] for day, hour in hours}

    async def _counters(self, days: Sequence[date]) -> list[tuple[int, ...]]:
        """The counters of each day summed over the user buckets (in the order of ``days``).

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

    async def day_masks(self, days: Sequence[date]) -> list[int]:
        """Each day's active users as one bitmask (0 for a day without data), in the order of ``days``."""
        parts = [self._keys.day_part(d) for d in days]
        return await self._masks(lambda b: self._keys.in_bucket(b, parts))

    async def hour_masks(self, hours: Sequence[tuple[date, int]]) -> list[int]:
        """Each local hour bucket's active users as one bitmask, in the order of ``hours``."""
        parts = [self._keys.hour_part(d, h) for d, h in hours]
        return await self._masks(lambda b: self._keys.in_bucket(b, parts))

    async def _masks(self, keys_of: Callable[[int], list[str]]) -> list[int]:
        """Per position of ``keys_of(bucket)``: the bitmaps of every bucket, side by side in one int.

        Each bucket gets the same span of bits in every mask (its longest bitmap among those read), so ORs of
        masks are unions of users and ``int.bit_count()`` counts them. Bit order inside a span is Redis' own
        (the most significant bit of a byte first): counting does not care.
        """
        size, calls = self._calls(keys_of, FETCH_CHUNK)
        replies = await self._guarded(self._send([(keys[0], pack_command(("MGET", *keys))) for _, _, keys in calls]))
        values: list[list[bytes]] = [[] for _ in range(self._keys.buckets)]
        for (bucket, _, _), reply in zip(calls, replies, strict=True):
            values[bucket] += [value or b"" for value in reply]
        spans: list[list[bytes]] = []
        for found in values:
            width = max(map(len, found), default=0)
            if width:
                spans.append([value.ljust(width, b"\0") for value in found])
        return [int.from_bytes(b"".join(span[i] for span in spans), "big") for i in range(size)]

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

    async def _send(self, commands: Sequence[Routed]) -> list[Any]:
        """Send pre-packed commands (each with its routing key) and return their replies in order; raise the
        first error reply once every reply is read. The one place the reader's batches talk to Redis."""
        # Packed by hiredis in C and sent on a pooled connection: a pipeline of 2,000 commands costs redis-py
        # about 60 ms of Python (command objects, reply callbacks); pre-packed, well under 1 ms.
        if not commands:
            return []
        pool = self._client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        refused: list[redis.ResponseError] = []
        try:
            await connection.send_packed_command(b"".join(packed for _, packed in commands))
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except redis.ResponseError as exc:  # read every reply, so the connection stays in step
                    refused.append(exc)
                    replies.append(exc)
        except BaseException:
            # A failure (or a cancellation) mid-reply leaves the connection out of step with its replies.
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        if refused:
            raise refused[0]
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
        """Raise :class:`StoreUnavailable` unless Redis answers."""
        try:
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
