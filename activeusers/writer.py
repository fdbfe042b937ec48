"""Writing activity into the index (the consumer's side, blocking redis-py): a batch's users numbered, their bits
set in the day, hour and new-user bitmaps of their user buckets with the days' counters, and the days' index
versions replaced, through the key schema of :mod:`activeusers.keys` and the scripts of :mod:`activeusers.scripts`.

Every write is idempotent and every expiry deterministic, so repeating a batch (at-least-once delivery, replays,
several consumers) changes nothing.
"""

from __future__ import annotations

import functools
import itertools
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from activeusers.connections import REDIS_ERRORS, Routed, SyncClient, pack_command
from activeusers.days import day_expiry_s
from activeusers.errors import StoreUnavailable
from activeusers.firstdays import FirstDayCalls
from activeusers.keys import DAY_SLOT, NEW_SLOT, KeySchema, Segment, bucket_of, day_of_number
from activeusers.packed import BITS_CHUNK, NUMBER_BITS, NUMBER_MASK, chunks, pack
from activeusers.registry import ValueIds
from activeusers.scripts import FIRST_DAYS, NUMBER_USERS, SET_BITS
from activeusers.settings import Settings
from activeusers.transport import send_commands
from activeusers.usersets import UserSets

# Ids per NUMBER_USERS call: bounds one call's time on Redis' thread (and the arguments of Lua's unpack).
NUMBER_CHUNK = 1000
EXPIRY_REFRESH_S = 600.0
EXPIRY_MEMO_KEYS = 100_000
# Bitmap records after which a batch's calls so far are sent (a backfill batch has thousands): a few more calls,
# and Redis works on them while the client builds the rest.
STREAM_RECORDS = 1500
# How many user numbers the writer remembers (about 100 bytes each) before it starts over.
NUMBER_MEMO_USERS = 2_000_000

# The counters' BITFIELD offsets (``#slot``: the slot-th 32-bit counter), sent as they are: a day's 26, or the id
# of a property's value (at most SEGMENT_MAX_VALUES' bound, 10,000).
_COUNTERS: Final = tuple(f"#{slot}" for slot in range(10_001))
# A bitmap of a batch: key part, counter, expiry and users.
_Record = tuple[str, int, int, set[str]]


@dataclass(slots=True)
class _Call:
    """One :data:`SET_BITS` call of one user bucket: its keys (the ids hash, its forgotten numbers, then per day
    group its counts key and bitmaps) and the groups' arguments."""

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
    """Writes batches of user sets, expiry included: the index's bitmaps and counters in one pipelined round trip,
    after one more for the numbers (and names) of users it has not seen before."""

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
        self._retention_days = settings.retention("days")
        self._hour_retention_days = settings.retention("hours")
        self._clock = clock
        self._wall = wall
        self._expiry_of: dict[tuple[date, int], int] = {}
        self._expiry_sent: dict[str, tuple[int, float]] = {}
        # user id -> bucket << NUMBER_BITS | number: numbers never change once given, so a memo is always exact.
        self._numbers: dict[str, int] = {}
        self._tags = [keys.tag(bucket) for bucket in range(keys.buckets)]
        self._ids = [keys.ids(bucket) for bucket in range(keys.buckets)]
        # The keys of each bucket's numbering script, in its order.
        self._numbering = [
            (
                keys.ids(bucket),
                keys.names(bucket),
                keys.names_made(bucket),
                keys.unlisted(bucket),
                keys.forgotten(bucket),
            )
            for bucket in range(keys.buckets)
        ]
        self._forgotten = [keys.forgotten(bucket) for bucket in range(keys.buckets)]
        self._first_days = FirstDayCalls(keys)
        self._values = ValueIds(keys, settings.segment_max_values)
        # Versions are this writer's id and a sequence number: unique among writers and across restarts.
        self._writer_id = secrets.token_hex(8)
        self._writes = itertools.count()

    @classmethod
    def of(cls, client: SyncClient, settings: Settings) -> ActivityWriter:
        """The writer of the settings' key schema (:meth:`KeySchema.of`) and retention."""
        return cls(client, KeySchema.of(settings), settings)

    def write(self, sets: UserSets) -> None:
        """Store every set of the batch; raise :class:`StoreUnavailable` if Redis fails (nothing is partial
        in a harmful way: a retry of the same batch converges to the same state). The users of ``hours`` are
        numbered with those of ``days`` (the classifier puts every active user in both) or before (:meth:`numbers`).
        Forgotten users are left out: Redis refuses their numbers and their bits (see ``forget_users.lua``)."""
        refused = self._write(sets)
        if refused:
            # Numbers retired since this writer learnt them: its users are numbered again (a forgotten one gets
            # none, one restored since gets a new number) and written once more.
            memo = self._numbers
            again = {user for user in sets.members() if memo.get(user, -1) & NUMBER_MASK in refused}
            for user in again:
                memo.pop(user, None)
            if again:
                self._write(sets.only(again))

    def _write(self, sets: UserSets) -> set[int]:
        """:meth:`write` once: the numbers whose bits Redis refused (retired since this writer learnt them)."""
        now = self._clock()
        expiring: list[tuple[str, int]] = []
        try:
            forgotten = self._number(list(sets.members(hours=False)))
            if forgotten:
                sets = sets.only(forgotten, keep=False)
            self._values.register({(name, value) for _, name, value in sets.segments}, self._send)
            # NOSCRIPT (a new or restarted Redis): the script is loaded and sent again; idempotent, so bits set
            # before count nothing again.
            # The days' new version is set once their bits are: a reader that sees it finds every bit it vouches for.
            wall_s = self._wall()
            # The bits' calls are counted as they are sent: their replies (refused numbers) come first.
            bits: list[Routed] = []
            counted = _kept(self._commands(sets, wall_s, (now, expiring)), bits)
            commands = itertools.chain(counted, self._first_day_calls(sets, wall_s, (now, expiring)))
            days = {*sets.days, *sets.created, *(day for day, _ in sets.hours)}
            replies = self._send(commands, (SET_BITS.source, FIRST_DAYS.source), self._new_version(days))
            # A user's first day moved earlier also changed the first-day bitmap of the day it left.
            left = {number for reply in replies[len(bits) :] if isinstance(reply, list) for number in reply}
            if left and (versions := self._new_version({day_of_number(int(number)) for number in left})):
                self._send([versions])
        except REDIS_ERRORS as exc:
            self._first_days.dropped()
            raise StoreUnavailable(f"Redis write failed: {exc}") from exc
        self._first_days.recorded()
        if len(self._expiry_sent) > EXPIRY_MEMO_KEYS:
            self._expiry_sent.clear()
        for key, expire_at in expiring:
            self._expiry_sent[key] = (expire_at, now)
        return {int(number) for reply in replies[: len(bits)] if isinstance(reply, list) for number in reply}

    def numbers(self, user_ids: Collection[str]) -> dict[str, tuple[int, int]]:
        """The (bucket, number) of each user id, numbering the unknown ones (raises :class:`StoreUnavailable`);
        forgotten ids have none."""
        try:
            self._number(user_ids)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis numbering failed: {exc}") from exc
        memo = self._numbers
        return {user: (memo[user] >> NUMBER_BITS, memo[user] & NUMBER_MASK) for user in user_ids if user in memo}

    def _new_version(self, days: Collection[date]) -> Routed | None:
        """The command that gives ``days`` a new index version (a token unique to this write), if any."""
        if not days:
            return None
        token = f"{self._writer_id}.{next(self._writes)}"
        key = self._keys.versions()
        fields = [part for day in days for part in (self._keys.day_field(day), token)]
        return key, pack_command(("HSET", key, *fields))

    def _commands(self, sets: UserSets, wall_s: float, memo: tuple[float, list[tuple[str, int]]]) -> Iterator[Routed]:
        """The batch's bits' calls, built as they are sent, a few days at a time (Redis sets the first days' bits
        while the next days' calls are built)."""
        calls: dict[int, list[_Call]] = {}
        records = 0
        for (day, counts_part), day_records in self._records(sets).items():
            records += self._bits(calls, day, counts_part, day_records, wall_s, memo)
            if records >= STREAM_RECORDS:
                yield from (call.packed() for bucket_calls in calls.values() for call in bucket_calls)
                calls, records = {}, 0
        yield from (call.packed() for bucket_calls in calls.values() for call in bucket_calls)

    def _first_day_calls(
        self, sets: UserSets, wall_s: float, memo: tuple[float, list[tuple[str, int]]]
    ) -> Iterator[Routed]:
        """The batch's first-day calls: per day and user bucket, the day's users whose first day may move handed to
        :data:`FIRST_DAYS`, which moves it when the recorded one is later (idempotent, like the bits')."""
        numbers_of = self._numbers.__getitem__
        for day, users in sorted(sets.days.items()):
            expire_at = self._expiry(day, self._retention_days)
            if expire_at > wall_s:
                due = functools.partial(self._due, expire_at=expire_at, now=memo[0], expiring=memo[1])
                yield from self._first_days.calls(day, map(numbers_of, users), due)

    def _records(self, sets: UserSets) -> defaultdict[tuple[date, str], list[_Record]]:
        """The bitmaps of the batch per local day and counts key: (key part, counter, expiry, users) of its day,
        hours and new users (the day's counts key), and of its segments (their property's counts key)."""
        keys = self._keys
        records: defaultdict[tuple[date, str], list[_Record]] = defaultdict(list)
        for day, users in sets.days.items():
            at = (day, keys.counts_part(day))
            records[at].append((keys.day_part(day), DAY_SLOT, self._expiry(day, self._retention_days), users))
        for (day, hour), users in sets.hours.items():
            at = (day, keys.counts_part(day))
            records[at].append((keys.hour_part(day, hour), hour, self._expiry(day, self._hour_retention_days), users))
        for day, users in sets.created.items():
            at = (day, keys.counts_part(day))
            records[at].append((keys.new_part(day), NEW_SLOT, self._expiry(day, self._retention_days), users))
        for (day, name, value_id), users in self._values.grouped(sets.segments).items():
            at = (day, keys.segment_counts_part(name, day))
            part = keys.segment_part(Segment(name, value_id), day)
            records[at].append((part, value_id, self._expiry(day, self._retention_days), users))
        return records

    def _number(self, users: Collection[str]) -> set[str]:
        """Make sure every user of ``users`` has its number in the memo: one round trip for the unknown ones. Returns
        the forgotten ones (they have none, and are not remembered: one restored later gets a new number)."""
        memo = self._numbers
        if len(memo) + len(users) > NUMBER_MEMO_USERS:
            memo.clear()
            self._first_days.clear()
        buckets = self._keys.buckets
        unknown: defaultdict[int, set[str]] = defaultdict(set)
        for user in [user for user in users if user not in memo]:
            unknown[bucket_of(user, buckets)].add(user)
        if not unknown:
            return set()
        calls: list[tuple[int, list[str]]] = []
        for bucket, found in unknown.items():
            ids = list(found)
            calls += [(bucket, ids[start : start + NUMBER_CHUNK]) for start in range(0, len(ids), NUMBER_CHUNK)]
        commands = [
            (self._ids[bucket], pack_command(("EVALSHA", NUMBER_USERS.sha, 5, *self._numbering[bucket], *ids)))
            for bucket, ids in calls
        ]
        replies = self._send(commands, (NUMBER_USERS.source,))  # NOSCRIPT (a new or restarted Redis): loaded
        forgotten: set[str] = set()
        for (bucket, ids), numbers in zip(calls, replies, strict=True):
            for user, number in zip(ids, numbers, strict=True):
                if number < 0:
                    forgotten.add(user)
                else:
                    memo[user] = pack(bucket, int(number))
        return forgotten

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
        # Pre-packed and sent in one write per Redis node: redis-py's Pipeline spends Python per command on
        # bookkeeping and reply callbacks, and a backfill batch sends hundreds of commands from a busy core.
        replies = send_commands(self._client, commands, scripts, then)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _bits(
        self,
        calls: dict[int, list[_Call]],
        day: date,
        counts_part: str,
        records: list[_Record],
        wall_s: float,
        memo: tuple[float, list[tuple[str, int]]],
    ) -> int:
        """Add the ``records`` of ``day`` counted in ``counts_part`` (what follows a bucket's tag in their counts
        key) to each user bucket's calls: one group per bucket (its counts key), one
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
            for chunk in chunks(numbers):
                if call is None or call.bits + len(chunk) > BITS_CHUNK:
                    call = _Call([self._ids[bucket], self._forgotten[bucket]])
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


def _kept(commands: Iterator[Routed], sent: list[Routed]) -> Iterator[Routed]:
    """``commands``, each also appended to ``sent`` as it goes."""
    for command in commands:
        sent.append(command)
        yield command
