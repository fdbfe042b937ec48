"""A per-process cache of what the API derives from each day's data, each entry checked against a version.

The version is the day's index version (:meth:`~activeusers.reader.ActivityReader.day_versions`), read in one
round trip for every requested day: the writer replaces it with a new unique token after every write of that day's
bitmaps has been acknowledged, so an unchanged token means unchanged bitmaps and counters, provided the token is
read before the bitmaps (a write in between leaves the old token, and the next request reads the day again). What
is kept: active-users' encoded elements, masks, counters and union counts.

Only the entries whose version changed are read again. If an operator removes members or bits by hand or
restores an older copy of Redis without its versions, restart the API processes: until then an entry may be
served for up to ``API_CACHE_TTL``, the age after which every entry is read again whatever its version (the
safety net for such cases).

Memory is bounded: the entries are a least-recently-used list whose estimated sizes add up to at most
``API_CACHE_BYTES`` (0 turns the cache off). The cache belongs to one app (its :class:`~api.activity.Activity`);
nothing is shared between apps or processes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

# Rough per-entry bookkeeping (the OrderedDict slot, the key tuple, the entry object), added to a value's size.
_ENTRY_OVERHEAD: Final = 200


@dataclass(slots=True)
class _Entry:
    version: Hashable
    value: Any
    size: int
    stored_at: float


class DayCache:
    """Values derived from each day's data, each valid while the version it was made from holds. ``clock``
    returns monotonic seconds.

    It earns its memory where deriving costs more than checking: decoding a day's 100k ids from its bitmaps and
    encoding them sorted into an active-users element costs tens of milliseconds, and joining a day's bitmaps of
    every user bucket into one mask (or summing its counters over the buckets) costs more than the one round trip
    that reads every day's version.
    A day only changes while it is today (or when late events arrive).
    """

    def __init__(self, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """Whether anything is kept at all (``API_CACHE_BYTES`` is not 0)."""
        return self.max_bytes > 0

    @property
    def size_bytes(self) -> int:
        """Estimated memory held by the entries."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def fragment(self, day: date, version: Hashable) -> bytes | None:
        """The cached active-users element of ``day`` (``b""``: no users) if it was made under ``version``."""
        found: bytes | None = self.get(("fragment", day), version)
        return found

    def put_fragment(self, day: date, version: Hashable, fragment: bytes) -> None:
        """Keep the active-users element of ``day``, made under its index version ``version``."""
        self.put(("fragment", day), version, fragment, len(fragment))

    def get(self, key: Hashable, version: Hashable) -> Any:
        """The value kept under ``key`` if it was made from ``version`` and is younger than the TTL, else None."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.version != version or self._clock() - entry.stored_at >= self.ttl_s:
            self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.value

    def put(self, key: Hashable, version: Hashable, value: Any, size: int) -> None:
        """Keep ``value`` (about ``size`` bytes) under ``key``, made from ``version``."""
        if not self.enabled:
            return
        if key in self._entries:
            self._drop(key)
        size += _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        self._entries[key] = _Entry(version, value, size, self._clock())
        self._bytes += size
        while self.size_bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        self._bytes -= self._entries.pop(key).size
