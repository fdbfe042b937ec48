"""``active-users reindex``: the upgrade of the data an earlier version left in Redis (see ``docs/keys.md``).

1. Names: every user bucket's names list (number -> id) is brought up to its ids hash, for the numbers given
   before the list existed (a scan of the hash, the ids appended in number order by ``append_names.lua``, which
   checks each id's number and appends only where the list ends).
2. Sets: every day set, and the pre-index hour and new-user sets, has its members numbered (the writer's atomic
   script, so consumers running meanwhile agree on the numbers and list the new ones) and set in its bitmaps, and
   is then deleted, each right after its bits are written (an interrupted run resumes where it stopped). Keys past
   their own retention write nothing.
3. Names again: numbers given meanwhile by consumers of the previous version (a rolling upgrade) are listed.

Every step is idempotent: running it again changes nothing, and it is safe beside running consumers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TextIO

from activeusers.connections import REDIS_ERRORS, SyncClient, pack_command
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.scripts import APPEND_NAMES
from activeusers.transport import send_commands
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from consumer.progress import ProgressBar

# Members read (and written) at once: bounds the memory and one SSCAN page's share of Redis' thread.
MEMBERS_CHUNK = 10_000
# Ids appended per append_names.lua call: bounds one call's time on Redis' thread.
NAMES_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class ReindexResult:
    """What a reindex found and wrote."""

    day_sets: int
    hour_sets: int
    new_user_sets: int
    ids: int
    listed: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _Source:
    """One set to index: its key, what it holds (the UserSets field its members go to) and its day or hour."""

    key: str
    kind: str  # "days", "hours" or "created"
    when: date | tuple[date, int]


def reindex(
    client: SyncClient,
    writer: ActivityWriter,
    keys: KeySchema,
    out: TextIO,
    clock: Callable[[], float] = time.monotonic,
) -> ReindexResult:
    """List the ids of every numbered user, then index and delete every old set of the schema's prefix and zone,
    with progress on ``out`` (ids listed and set members indexed); raise :class:`StoreUnavailable` when Redis
    fails (a new run picks up from there)."""
    started = clock()
    try:
        sources = _sources(client, keys)
        unlisted = sum(_unlisted(client, keys, bucket) for bucket in range(keys.buckets))
        bar = ProgressBar(unlisted + sum(int(client.scard(source.key)) for source in sources), out, clock, unit="ids")
        listed = _list_names(client, keys, bar, 0)
        indexed = 0
        for source in sources:
            for chunk in _members(client, source.key):
                batch = UserSets()
                getattr(batch, source.kind)[source.when] = chunk
                # write() numbers the users of days and creations; an hour set's may be in no day set any more.
                writer.numbers(chunk)
                writer.write(batch)
                indexed += len(chunk)
                bar.update(listed + indexed)
            client.delete(source.key)
        listed += _list_names(client, keys, bar, listed + indexed)
        bar.update(listed + indexed, final=True)
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"Redis failed during reindex: {exc}") from exc
    counted = {kind: sum(1 for source in sources if source.kind == kind) for kind in ("days", "hours", "created")}
    return ReindexResult(counted["days"], counted["hours"], counted["created"], indexed, listed, clock() - started)


def _unlisted(client: SyncClient, keys: KeySchema, bucket: int) -> int:
    """How many of ``bucket``'s numbers its names list lacks."""
    return max(0, int(client.hlen(keys.ids(bucket))) - int(client.llen(keys.names(bucket))))


def _list_names(client: SyncClient, keys: KeySchema, bar: ProgressBar, done: int) -> int:
    """Bring every bucket's names list up to its ids hash; how many ids were appended (progress from ``done``)."""
    appended = 0
    for bucket in range(keys.buckets):
        first = listed = int(client.llen(keys.names(bucket)))
        while True:
            # The ids the numbering kept while the list was behind (this version's consumers), then a scan for the
            # rest (numbers given before this version, or by its consumers of the previous one).
            while (length := _append_names(client, keys, bucket, -1, ())) > listed:
                listed = length
                bar.update(done + appended + listed - first)
            found = _unlisted_ids(client, keys, bucket, listed)
            if found is None:
                break
            start = listed
            for offset in range(0, len(found), NAMES_CHUNK):
                chunk = found[offset : offset + NAMES_CHUNK]
                length = _append_names(client, keys, bucket, start + offset, chunk)
                if length < start + offset + len(chunk):
                    break  # the list moved on meanwhile (another run): look again from where it ends
                bar.update(done + appended + length - first)
            listed = int(client.llen(keys.names(bucket)))
        appended += listed - first
    return appended


def _unlisted_ids(client: SyncClient, keys: KeySchema, bucket: int, listed: int) -> list[str] | None:
    """The ids of ``bucket``'s numbers from ``listed`` (where its names list ends) on, in order (``None`` when the
    list holds every number). The hash is scanned whole: it has no index by number."""
    if listed >= int(client.hlen(keys.ids(bucket))):
        return None
    found: dict[int, str] = {}
    for user, number in client.hscan_iter(keys.ids(bucket), count=1000):
        if int(number) >= listed:
            found[int(number)] = _text(user)
    ids: list[str] = []
    while (listed + len(ids)) in found:
        ids.append(found[listed + len(ids)])
    if not ids:
        raise StoreUnavailable(f"{keys.ids(bucket)} gives no user number {listed}: its numbers are not dense")
    return ids


def _append_names(client: SyncClient, keys: KeySchema, bucket: int, start: int, ids: Sequence[str]) -> int:
    """Append ``ids`` (the ids of numbers ``start``...) to ``bucket``'s names list if it ends at ``start``, then the
    ids the numbering kept for the numbers that follow (at most 1,000); the list's length afterwards."""
    numbering = (keys.ids(bucket), keys.names(bucket), keys.names_made(bucket), keys.unlisted(bucket))
    command = pack_command(("EVALSHA", APPEND_NAMES.sha, len(numbering), *numbering, start, *ids))
    (reply,) = send_commands(client, [(numbering[0], command)], (APPEND_NAMES.source,))
    if isinstance(reply, Exception):
        raise reply
    return int(reply)


def _sources(client: SyncClient, keys: KeySchema) -> list[_Source]:
    """The sets to index: day sets first (they number most users), then the old hour and new-user sets."""
    found: list[_Source] = []
    for key in _scan(client, keys.old_day_pattern()):
        if (day := keys.old_day_of(key)) is not None:
            found.append(_Source(key, "days", day))
    for key in _scan(client, keys.old_hour_pattern()):
        if (hour := keys.old_hour_of(key)) is not None:
            found.append(_Source(key, "hours", hour))
    for key in _scan(client, keys.old_new_users_pattern()):
        if (created := keys.old_new_users_of(key)) is not None:
            found.append(_Source(key, "created", created))
    return found


def _scan(client: SyncClient, pattern: str) -> list[str]:
    return sorted({_text(key) for key in client.scan_iter(match=pattern, count=1000)})


def _members(client: SyncClient, key: str) -> Iterator[set[str]]:
    chunk: set[str] = set()
    for member in client.sscan_iter(key, count=1000):
        chunk.add(_text(member))
        if len(chunk) >= MEMBERS_CHUNK:
            yield chunk
            chunk = set()
    if chunk:
        yield chunk


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
