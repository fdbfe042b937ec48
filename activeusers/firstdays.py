"""The writer's first-day calls (:data:`~activeusers.scripts.FIRST_DAYS`), and the first days it knows are recorded.

A user's recorded first day only ever moves earlier, so once a call has recorded day ``d`` for a number (or found
an earlier one), an event of ``d`` or later cannot change it: only the users whose known first day is later than
the event's day (or unknown) are sent. In a live stream that is almost none: a user's first day is known from the
first batch that had it. A batch's days are asked in ascending order and a call counts as known at once (undone
if the batch fails), so a user active on several days of one batch is sent once, for the earliest.

The check runs for every (user, day) of every batch, so it is made of C-level steps only (``map`` of the memo's
``get``, ``compress``), and only the users sent are sorted into buckets. What is known lives as long as the
writer's numbers and is keyed by packed number, so a user numbered anew (restored after an erasure) starts unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from itertools import compress, repeat
from typing import Final

from activeusers.connections import Routed, pack_command
from activeusers.keys import KeySchema, day_number
from activeusers.packed import by_bucket, chunks
from activeusers.scripts import FIRST_DAYS

# Later than every day number (a u16, 2149 the last year): unknown.
_UNKNOWN: Final = 1 << 16


class FirstDayCalls:
    """The first-day calls of one writer's batches, sent only for users whose first day may move."""

    def __init__(self, keys: KeySchema) -> None:
        self._keys = keys
        self._start = keys.first_part_start()
        self._known: dict[int, int] = {}
        # Per call made since the last recorded() or dropped(): the numbers marked known and what they were before.
        self._undo: list[tuple[list[int], list[int]]] = []

    def calls(self, day: date, users: Iterable[int], expiry: Callable[[str], int]) -> Iterator[Routed]:
        """The calls recording ``day`` as the first day of the ``users`` (packed numbers) not known to have one as
        early; ``expiry(key part)`` is the expiry argument of the day's first-day bitmap of a bucket. A batch asks
        for its days in ascending order: a user sent for a day is not sent again for a later one."""
        number = day_number(day)
        keys, part = self._keys, self._keys.first_part(day)
        for bucket, numbers in by_bucket(sorted(self._unsettled(users, number))):
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
        self._undo.clear()

    def dropped(self) -> None:
        """The calls made since the last :meth:`recorded` or :meth:`dropped` may not have taken effect."""
        known = self._known
        for users, before in reversed(self._undo):
            for user, was in zip(users, before, strict=True):
                if was == _UNKNOWN:
                    del known[user]
                else:
                    known[user] = was
        self._undo.clear()

    def clear(self) -> None:
        """Forget every known first day (with the writer's numbers)."""
        self._known.clear()
        self._undo.clear()

    def _unsettled(self, users: Iterable[int], number: int) -> list[int]:
        """The ``users`` whose known first day is later than day ``number``, marked as known on it."""
        known = self._known
        users = list(users)
        found = list(compress(users, map(number.__lt__, map(known.get, users, repeat(_UNKNOWN)))))
        if found:
            self._undo.append((found, list(map(known.get, found, repeat(_UNKNOWN)))))
            known.update(zip(found, repeat(number)))
        return found
