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

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

Kind = Literal["fragment", "mask"]
# Rough per-entry bookkeeping (the OrderedDict slot, the key tuple, the entry object), added to a value's size.
_ENTRY_OVERHEAD: Final = 200
# What a user id costs in a universe beyond the string itself: a dict slot with its hash and a small int.
_UNIVERSE_SLOT: Final = 100


class Universe:
    """Numbers every user id it meets, so that a day set becomes a bitmask (a Python int, bit i = user i).

    Unions of day sets are then ORs of ints and counts are ``int.bit_count()``: a month window over 100k-user
    days costs a few big-int operations instead of millions of set insertions. Masks are only comparable
    within the universe that made them.
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._index)

    def mask(self, members: Collection[str]) -> int:
        """The bitmask of ``members``, numbering the ids not seen before."""
        index = self._index
        positions: list[int] = []
        for member in members:
            position = index.get(member)
            if position is None:
                position = index[member] = len(index)
                self.bytes += sys.getsizeof(member) + _UNIVERSE_SLOT
            positions.append(position)
        bits = bytearray((len(index) + 7) // 8)
        for position in positions:
            bits[position >> 3] |= 1 << (position & 7)
        return int.from_bytes(bits, "little")


@dataclass(frozen=True, slots=True)
class DayMask:
    """A day set as a bitmask of one universe."""

    universe: Universe
    bits: int


@dataclass(slots=True)
class _Entry:
    cardinality: int
    value: bytes | DayMask
    size: int
    stored_at: float


class DayCache:
    """Derived values per (kind, day), each valid while its day set keeps the cardinality it was made from.

    ``fragment`` entries hold the encoded active-users element of a day (``{"usersList":[...],...}``), ``mask``
    entries the day set as a :class:`DayMask` for the summary's windows. ``clock`` returns monotonic seconds.
    """

    def __init__(self, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[tuple[Kind, date], _Entry] = OrderedDict()
        self._bytes = 0
        self._universe = Universe()

    @property
    def enabled(self) -> bool:
        """Whether anything is kept at all (``API_CACHE_BYTES`` is not 0)."""
        return self.max_bytes > 0

    @property
    def size_bytes(self) -> int:
        """Estimated memory held: the entries plus the current universe."""
        return self._bytes + self._universe.bytes

    def __len__(self) -> int:
        return len(self._entries)

    def universe(self) -> Universe:
        """The universe new masks should use: the shared one, or a throwaway one when the cache is off."""
        return self._universe if self.enabled else Universe()

    def fragment(self, day: date, cardinality: int) -> bytes | None:
        """The cached encoded element of ``day`` if its set still has ``cardinality`` members."""
        value = self._get(("fragment", day), cardinality)
        return value if isinstance(value, bytes) else None

    def put_fragment(self, day: date, cardinality: int, fragment: bytes) -> None:
        """Keep the encoded element of ``day``, made from a set of ``cardinality`` members."""
        self._put(("fragment", day), cardinality, fragment, len(fragment))

    def mask(self, day: date, cardinality: int, universe: Universe) -> int | None:
        """The cached bitmask of ``day`` in ``universe`` if its set still has ``cardinality`` members."""
        value = self._get(("mask", day), cardinality)
        return value.bits if isinstance(value, DayMask) and value.universe is universe else None

    def put_mask(self, day: date, cardinality: int, universe: Universe, bits: int) -> None:
        """Keep the bitmask of ``day``; ignored when ``universe`` is no longer current (it was reset meanwhile)."""
        if universe is not self._universe:
            return
        if universe.bytes > self.max_bytes // 2:
            # The universe only grows (one slot per id ever met) and its masks cannot be renumbered: past half the
            # budget it starts over, and the masks made in it go with it.
            self._universe = Universe()
            for key in [key for key in self._entries if key[0] == "mask"]:
                self._drop(key)
            return
        self._put(("mask", day), cardinality, DayMask(universe, bits), sys.getsizeof(bits))

    def _get(self, key: tuple[Kind, date], cardinality: int) -> bytes | DayMask | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.cardinality != cardinality or self._clock() - entry.stored_at >= self.ttl_s:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    def _put(self, key: tuple[Kind, date], cardinality: int, value: bytes | DayMask, size: int) -> None:
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

    def _drop(self, key: tuple[Kind, date]) -> None:
        self._bytes -= self._entries.pop(key).size
