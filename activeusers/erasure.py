"""Forgetting users (the right to erasure): their numbers retired and ids tombstoned, their bits cleared from every
retained bitmap with the counters kept equal to the bit counts, and the touched days given new index versions, so
every API process' caches, the shared derived values and the kept unions are made again without them.

An erasure is planned here as rounds of pre-packed commands (:class:`Erasure`), with no I/O of its own, and run by
:meth:`Eraser.forget` (asyncio: the API) or :func:`forget_blocking` (the command line). Every script touches one
user bucket (one cluster slot) and is sized to stay short on Redis' thread. Order matters: the numbers are retired
first (writers refuse their bits from then on, ``set_bits.lua``), then the bits are cleared, then the versions are
replaced, once every bit is gone: a reader that sees a new version finds none of the users' bits.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from activeusers.connections import REDIS_ERRORS, AsyncClient, Routed, SyncClient, pack_command
from activeusers.days import day_expiry_s
from activeusers.errors import StoreUnavailable
from activeusers.keys import DAY_SLOT, NEW_SLOT, OTHER_ID, KeySchema, Segment, bucket_of
from activeusers.scripts import CLEAR_BITS, FORGET_USERS, RESTORE_USERS
from activeusers.settings import Settings
from activeusers.transport import send_commands, send_commands_async

# Ids per forget_users.lua / restore_users.lua call: a few Redis calls each.
IDS_CHUNK: Final = 200
# A clear_bits.lua call reads at most this many bitmaps, and at most PROBES_CHUNK bits in all (one BITFIELD GET of
# every number's bit per bitmap): each call stays well under a millisecond of Redis' thread.
BITMAPS_CHUNK: Final = 600
PROBES_CHUNK: Final = 2000
# Calls sent per round trip: Redis serves other clients between rounds.
CALLS_PER_ROUND: Final = 32
LOG = logging.getLogger(__name__)

Round = tuple[list[Routed], tuple[str, ...]]
# A clear_bits.lua call and the days of its groups.
_Clear = tuple[Routed, list[date]]
Rounds = Generator[Round, list[Any], "Erased"]


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure (or a restore) did: how many distinct ids it was given, and the days given a new version."""

    users: int
    days: tuple[date, ...] = ()


class Erasure:
    """The rounds of one erasure of ``user_ids`` (:meth:`rounds`) at ``now_s``; ``done``/``total``: the clear
    calls sent so far and in all (known after the first round), for a progress line."""

    def __init__(self, keys: KeySchema, settings: Settings, user_ids: Sequence[str], now_s: float) -> None:
        self.keys = keys
        self.settings = settings
        self.ids = sorted(set(user_ids))
        self.now_s = now_s
        self.done = 0
        self.total = 0

    def rounds(self) -> Rounds:
        """Retire the numbers (and read which days exist), clear their bits bucket by bucket, then replace the
        versions of the days where a bit was cleared. Send each round, and send its replies back."""
        retire = [
            (bucket, self._retire(bucket, chunk))
            for bucket, ids in _by_bucket(self.ids, self.keys.buckets).items()
            for chunk in _chunked(ids)
        ]
        versions = self.keys.versions()
        # The indexed properties' registries name the value bitmaps (segments) to clear too.
        registries = [self.keys.values(name) for name in self.settings.indexed_properties]
        replies = yield (
            [
                *(call for _, call in retire),
                *((key, pack_command(("HGETALL", key))) for key in (versions, *registries)),
            ],
            (FORGET_USERS.source,),
        )
        numbers: dict[int, set[int]] = {}
        for (bucket, _), reply in zip(retire, replies, strict=False):
            numbers.setdefault(bucket, set()).update(int(number) for number in reply)
        days = self._retained(replies[len(retire)])
        segments = [
            Segment(name, value)
            for name, reply in zip(self.settings.indexed_properties, replies[len(retire) + 1 :], strict=True)
            for value in (OTHER_ID, *_values(reply))
        ]
        clears = [self._clears(bucket, sorted(found), days, segments) for bucket, found in numbers.items()]
        calls = _interleaved(clears)
        self.total = len(calls)
        touched: set[date] = set()
        for start in range(0, len(calls), CALLS_PER_ROUND):
            batch = calls[start : start + CALLS_PER_ROUND]
            replies = yield [command for command, _ in batch], (CLEAR_BITS.source,)
            for (_, groups), reply in zip(batch, replies, strict=True):
                touched.update(groups[int(position) - 1] for position in reply)
            self.done = start + len(batch)
        # The retired numbers' first days are forgotten too (first_days.lua records none for them from now on).
        firsts = [self._no_first_day(bucket, sorted(found)) for bucket, found in numbers.items() if found]
        if touched or firsts:
            token = f"forget.{secrets.token_hex(8)}"
            fields = [part for day in sorted(touched) for part in (self.keys.day_field(day), token)]
            yield [*firsts, *([(versions, pack_command(("HSET", versions, *fields)))] if fields else [])], ()
        return Erased(len(self.ids), tuple(sorted(touched)))

    def _retire(self, bucket: int, ids: Sequence[str]) -> Routed:
        keys = self.keys
        numbering = (keys.ids(bucket), keys.names(bucket), keys.names_made(bucket), keys.unlisted(bucket))
        command: tuple[str | int, ...] = ("EVALSHA", FORGET_USERS.sha, 5, *numbering, keys.forgotten(bucket), *ids)
        return keys.ids(bucket), pack_command(command)

    def _no_first_day(self, bucket: int, numbers: list[int]) -> Routed:
        """The command that sets the first-day numbers of ``numbers`` to none."""
        key = self.keys.first_days(bucket)
        fields = [part for number in numbers for part in ("SET", "u16", f"#{number}", 0)]
        return key, pack_command(("BITFIELD", key, *fields))

    def _retained(self, versions: list[Any] | dict[Any, Any]) -> list[tuple[date, bool]]:
        """The days in the versions hash (every day ever written: ``HGETALL``'s reply) whose bitmaps are still
        retained, oldest first, each with whether its hour bitmaps are too."""
        zone, days = self.settings.zone, []
        for name in versions if isinstance(versions, dict) else versions[::2]:
            day = date.fromisoformat(name.decode() if isinstance(name, bytes) else name)
            if day_expiry_s(day, zone, self.settings.retention_days) > self.now_s:
                days.append((day, day_expiry_s(day, zone, self.settings.hour_retention_days) > self.now_s))
        return sorted(days)

    def _clears(
        self, bucket: int, numbers: list[int], days: list[tuple[date, bool]], segments: Sequence[Segment]
    ) -> list[tuple[Routed, list[date]]]:
        """The clear_bits.lua calls of one bucket's ``numbers`` over ``days`` (and the value bitmaps of
        ``segments``), each with the days of its groups."""
        keys = self.keys
        per_call = max(1, min(BITMAPS_CHUNK, PROBES_CHUNK // len(numbers)))
        records = [
            (day, keys.counts(day, bucket), keys.tag(bucket) + part, slot)
            for day, hours in days
            for part, slot in _parts(keys, day, hours)
        ]
        for day, _ in days:
            records += [
                (day, keys.segment_counts(seg.property, day, bucket), keys.segment_bits(seg, day, bucket), seg.value)
                for seg in segments
            ]
        return [_clear_call(records[start : start + per_call], numbers) for start in range(0, len(records), per_call)]


def _clear_call(records: Sequence[tuple[date, str, str, int | None]], numbers: list[int]) -> _Clear:
    """One clear_bits.lua call of ``numbers`` over ``records`` (day, counts key, bitmap, slot; grouped by counts
    key), with the days of its groups."""
    groups: list[date] = []
    keys: list[str] = []
    sizes: list[list[str]] = []
    group_counts = ""
    for day, counts, key, slot in records:
        if counts != group_counts:
            groups.append(day)
            keys.append(counts)
            sizes.append([])
            group_counts = counts
        keys.append(key)
        sizes[-1].append("-" if slot is None else f"#{slot}")
    args: list[str | int] = []
    for slots in sizes:
        args += (len(slots), *slots)
    command: tuple[str | int, ...] = (
        "EVALSHA",
        CLEAR_BITS.sha,
        len(keys),
        *keys,
        len(numbers),
        *numbers,
        len(groups),
        *args,
    )
    return (keys[0], pack_command(command)), groups


def _parts(keys: KeySchema, day: date, hours: bool) -> list[tuple[str, int | None]]:
    """What follows a bucket's tag in each retained bitmap of ``day``, with its counter's slot (None: the first-day
    bitmap has no counter)."""
    parts: list[tuple[str, int | None]] = [
        (keys.day_part(day), DAY_SLOT),
        (keys.new_part(day), NEW_SLOT),
        (keys.first_part(day), None),
    ]
    if hours:
        parts += [(keys.hour_part(day, hour), hour) for hour in range(24)]
    return parts


def _values(reply: list[Any] | dict[Any, Any]) -> list[int]:
    """The value ids of a registry (``HGETALL``'s reply: a flat list, or a dict from a decoding client)."""
    return [int(found) for found in (reply.values() if isinstance(reply, dict) else reply[1::2])]


def _by_bucket(ids: Sequence[str], buckets: int) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for user in ids:
        found.setdefault(bucket_of(user, buckets), []).append(user)
    return found


def _chunked(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[start : start + IDS_CHUNK] for start in range(0, len(ids), IDS_CHUNK)]


def _interleaved(per_bucket: Sequence[list[_Clear]]) -> list[_Clear]:
    """The buckets' calls taken in turn, so that each round keeps every cluster node busy."""
    longest = max(map(len, per_bucket), default=0)
    return [calls[i] for i in range(longest) for calls in per_bucket if i < len(calls)]


def restore_rounds(keys: KeySchema, user_ids: Sequence[str]) -> Rounds:
    """The one round of lifting the tombstones of ``user_ids`` (``restore_users.lua``); ``Erased.users``: how many
    were forgotten."""
    commands = [
        (keys.ids(bucket), pack_command(("EVALSHA", RESTORE_USERS.sha, 1, keys.ids(bucket), *chunk)))
        for bucket, ids in _by_bucket(sorted(set(user_ids)), keys.buckets).items()
        for chunk in _chunked(ids)
    ]
    replies = yield commands, (RESTORE_USERS.source,)
    return Erased(sum(map(int, replies)))


def digests(user_ids: Sequence[str]) -> list[str]:
    """The SHA-256 (hex) of each distinct id, sorted: what a log line says of the ids (never an id)."""
    return sorted(hashlib.sha256(user.encode()).hexdigest() for user in set(user_ids))


def _log(event: str, user_ids: Sequence[str], done: Erased) -> None:
    LOG.info(event, extra={"count": len(set(user_ids)), "sha256": digests(user_ids), "days": len(done.days)})


def _checked(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def run_blocking(client: SyncClient, rounds: Rounds, progress: Callable[[], None] | None = None) -> Erased:
    """Send ``rounds`` on a blocking client (raises :class:`StoreUnavailable`), calling ``progress`` after each."""
    replies: list[Any] | None = None
    try:
        while True:
            commands, scripts = rounds.send(replies)  # type: ignore[arg-type]
            replies = _checked(send_commands(client, commands, scripts))
            if progress is not None:
                progress()
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"Redis erasure failed: {exc}") from exc


def forget_blocking(
    client: SyncClient, settings: Settings, user_ids: Sequence[str], progress: Callable[[Erasure], None] | None = None
) -> Erased:
    """Forget ``user_ids`` on a blocking client (the command line), calling ``progress`` after each round."""
    erasure = Erasure(KeySchema.of(settings), settings, user_ids, time.time())
    done = run_blocking(client, erasure.rounds(), None if progress is None else lambda: progress(erasure))
    _log("users forgotten", user_ids, done)
    return done


def restore_blocking(client: SyncClient, settings: Settings, user_ids: Sequence[str]) -> Erased:
    """Lift the tombstones of ``user_ids`` on a blocking client: their later events count again."""
    done = run_blocking(client, restore_rounds(KeySchema.of(settings), user_ids))
    _log("users restored", user_ids, done)
    return done


class Eraser:
    """Forgets users through an asyncio client (the API), at ``clock``'s time."""

    def __init__(self, client: AsyncClient, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._settings = settings
        self._clock = clock

    async def forget(self, user_ids: Sequence[str]) -> Erased:
        """Forget ``user_ids``; returns once every bit is cleared and every touched day has its new version (raises
        :class:`StoreUnavailable`)."""
        erasure = Erasure(KeySchema.of(self._settings), self._settings, user_ids, self._clock())
        rounds = erasure.rounds()
        replies: list[Any] | None = None
        try:
            while True:
                commands, scripts = rounds.send(replies)  # type: ignore[arg-type]
                replies = _checked(await send_commands_async(self._client, commands, scripts))
        except StopIteration as stop:
            done: Erased = stop.value
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis erasure failed: {exc}") from exc
        _log("users forgotten", user_ids, done)
        return done
