"""Building the index from the sets already in Redis: ``active-users reindex``, the upgrade from the layout
before the index (see ``docs/keys.md``).

Every day set's members are numbered (the writer's atomic script, so consumers running meanwhile agree on the
numbers) and set in the day bitmaps; the old hour and new-user sets are migrated into the hour and new-user
bitmaps and then deleted, one by one, each right after its bits are written (so an interrupted run resumes
where it stopped). A day set is kept, with the expiry ``MEMBER_RETENTION_DAYS`` gives it: one past that
retention is deleted once its bits are written. Keys past their own retention write nothing. Every step is
idempotent: running it again changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import TextIO

import redis

from activeusers.days import day_expiry_s
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.store import REDIS_ERRORS, ActivityWriter, Buckets
from consumer.progress import ProgressBar

# Members read (and written) at once: bounds the memory and one SSCAN page's share of Redis' thread.
MEMBERS_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class ReindexResult:
    """What a reindex found and wrote."""

    day_sets: int
    hour_sets: int
    new_user_sets: int
    ids: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _Source:
    """One set to index: its key, what it holds, and its expiry (``None``: an old set, deleted once indexed)."""

    key: str
    kind: str  # "days", "hours" or "created": the Buckets field its members go to
    when: date | tuple[date, int]
    expire_at: int | None


def reindex(
    client: redis.Redis,
    writer: ActivityWriter,
    keys: KeySchema,
    settings: Settings,
    out: TextIO,
    clock: Callable[[], float] = time.monotonic,
) -> ReindexResult:
    """Index every day set, hour set and new-user set of the settings' prefix and zone, with progress on
    ``out``; raise :class:`StoreUnavailable` when Redis fails (a new run picks up from there)."""
    started = clock()
    try:
        sources = _sources(client, keys, settings)
        total = sum(int(client.scard(source.key)) for source in sources)
        bar = ProgressBar(total, out, clock, unit="ids")
        done = 0
        for source in sources:
            for chunk in _members(client, source.key):
                batch = Buckets()
                getattr(batch, source.kind)[source.when] = chunk
                writer.numbers(chunk)  # an hour set's users may be in no day set any more
                writer.index(batch)
                done += len(chunk)
                bar.update(done)
            if source.expire_at is None:
                client.delete(source.key)
            else:
                client.expireat(source.key, source.expire_at)
        bar.update(done, final=True)
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"Redis failed during reindex: {exc}") from exc
    counted = {kind: sum(1 for source in sources if source.kind == kind) for kind in ("days", "hours", "created")}
    return ReindexResult(counted["days"], counted["hours"], counted["created"], done, clock() - started)


def _sources(client: redis.Redis, keys: KeySchema, settings: Settings) -> list[_Source]:
    """The sets to index: day sets first (they number most users), then the old hour and new-user sets."""
    found: list[_Source] = []
    for key in _scan(client, keys.day_pattern()):
        if (day := keys.day_of(key)) is not None:
            found.append(_Source(key, "days", day, day_expiry_s(day, settings.zone, settings.member_days)))
    for key in _scan(client, keys.old_hour_pattern()):
        if (hour := keys.old_hour_of(key)) is not None:
            found.append(_Source(key, "hours", hour, None))
    for key in _scan(client, keys.old_new_users_pattern()):
        if (created := keys.old_new_users_of(key)) is not None:
            found.append(_Source(key, "created", created, None))
    return found


def _scan(client: redis.Redis, pattern: str) -> list[str]:
    return sorted({_text(key) for key in client.scan_iter(match=pattern, count=1000)})


def _members(client: redis.Redis, key: str) -> Iterator[set[str]]:
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
