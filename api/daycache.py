"""A per-process cache of what the API derives from each day set, checked against the set's cardinality.

Why a cardinality is enough: the service's day sets only ever grow. The consumer only adds members (``SADD``),
nothing removes single members, and a key disappears only by expiry (its ``SCARD`` is then 0). So a day set whose
cardinality equals the one it had when an entry was made still holds exactly the same members, and one pipelined
``SCARD`` over the requested days (a single round trip) says which entries are still exact; only the days whose
cardinality changed are read again. If an operator removes members by hand (``SREM``) or restores an older copy
of Redis, restart the API processes: until then an entry may be served for up to ``API_CACHE_TTL``, the age after
which every entry is read again whatever its cardinality (the safety net for such cases).

Memory is bounded: the entries are a least-recently-used list whose estimated sizes add up to at most
``API_CACHE_BYTES`` (0 turns the cache off). The cache belongs to one app (``api.state.DAY_CACHE``); nothing is
shared between apps or processes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Final

# Rough per-entry bookkeeping (the OrderedDict slot, the key tuple, the entry object), added to a value's size.
_ENTRY_OVERHEAD: Final = 200


@dataclass(slots=True)
class _Entry:
    cardinality: int
    value: bytes
    size: int
    stored_at: float


class DayCache:
    """The encoded active-users element of each day (``{"usersList":[...],...}``), each valid while its day set
    keeps the cardinality it was made from. ``clock`` returns monotonic seconds.

    It earns its memory there: encoding 100k sorted ids costs tens of milliseconds, and a day only changes while
    it is today. Counts need no cache: they come from the index's bitmaps, a few kilobytes a day.
    """

    def __init__(self, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[date, _Entry] = OrderedDict()
        self._bytes = 0

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

    def fragment(self, day: date, cardinality: int) -> bytes | None:
        """The cached encoded element of ``day`` if its set still has ``cardinality`` members."""
        return self._get(day, cardinality)

    def put_fragment(self, day: date, cardinality: int, fragment: bytes) -> None:
        """Keep the encoded element of ``day``, made from a set of ``cardinality`` members."""
        self._put(day, cardinality, fragment, len(fragment))

    def _get(self, key: date, cardinality: int) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.cardinality != cardinality or self._clock() - entry.stored_at >= self.ttl_s:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    def _put(self, key: date, cardinality: int, value: bytes, size: int) -> None:
        if not self.enabled:
            return
        if key in self._entries:
            self._drop(key)
        size += _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        self._entries[key] = _Entry(cardinality, value, size, self._clock())
        self._bytes += size
        while self.size_bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: date) -> None:
        self._bytes -= self._entries.pop(key).size
