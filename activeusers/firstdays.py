"""The writer's first-day calls (:data:`~activeusers.scripts.FIRST_DAYS`), and the first days it knows are recorded.

A user's recorded first day only ever moves earlier, so once a call has recorded day ``d`` for a number (or found
an earlier one), an event of ``d`` or later cannot change it: only the users whose known first day is later than
the event's day (or unknown) are sent. In a live stream that is almost none: a user's first day is known from the
first batch that had it. What is known lives as long as the writer's numbers and is keyed by number, so a user
numbered anew (restored after an erasure) starts unknown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from typing import Final

from activeusers.connections import Routed, pack_command
from activeusers.keys import KeySchema, day_number
from activeusers.scripts import FIRST_DAYS

# A numbered user as the writer remembers it: its bucket above its number (a bitmap has at most 2**32 bits).
NUMBER_BITS: Final = 32
NUMBER_MASK: Final = (1 << NUMBER_BITS) - 1
# Bits per call: bounds one call's time on Redis' thread (and the arguments of Lua's unpack).
BITS_CHUNK: Final = 2000
_UNKNOWN: Final = 1 << 31


def chunks(numbers: list[int]) -> Sequence[list[int]]:
    """``numbers`` in slices of at most ``BITS_CHUNK``."""
    if len(numbers) <= BITS_CHUNK:
        return (numbers,)
    return [numbers[start : start + BITS_CHUNK] for start in range(0, len(numbers), BITS_CHUNK)]


class FirstDayCalls:
    """The first-day calls of one writer's batches, sent only for users whose first day may move."""

    def __init__(self, keys: KeySchema) -> None:
        self._keys = keys
        self._start = keys.first_part_start()
        self._known: dict[int, int] = {}
        self._pending: list[tuple[int, int]] = []

    def calls(self, day: date, users: Iterable[int], expiry: Callable[[str], int]) -> Iterator[Routed]:
        """The calls recording ``day`` as the first day of the ``users`` (packed numbers) not known to have one
        as early; ``expiry(key part)`` is the expiry argument of the day's first-day bitmap of a bucket."""
        number, known = day_number(day), self._known
        found: defaultdict[int, list[int]] = defaultdict(list)
        for packed in users:
            if known.get(packed, _UNKNOWN) > number:
                found[packed >> NUMBER_BITS].append(packed & NUMBER_MASK)
                self._pending.append((packed, number))
        keys, part = self._keys, self._keys.first_part(day)
        for bucket, numbers in found.items():
            first_days, tag = keys.first_days(bucket), keys.tag(bucket)
            at = expiry(tag + part)
            for chunk in chunks(numbers):
                command = (
                    *("EVALSHA", FIRST_DAYS.sha, 4, first_days, tag + part, keys.ids(bucket), keys.forgotten(bucket)),
                    *(number, at, tag + self._start, " ".join(map(str, chunk))),
                )
                yield first_days, pack_command(command)

    def recorded(self) -> None:
        """The calls made since the last :meth:`recorded` or :meth:`dropped` took effect: their days are known."""
        known = self._known
        for packed, number in self._pending:
            if known.get(packed, _UNKNOWN) > number:
                known[packed] = number
        self._pending.clear()

    def dropped(self) -> None:
        """The calls made since the last :meth:`recorded` or :meth:`dropped` may not have taken effect."""
        self._pending.clear()

    def clear(self) -> None:
        """Forget every known first day (with the writer's numbers)."""
        self._known.clear()
        self._pending.clear()
