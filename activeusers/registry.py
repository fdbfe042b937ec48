"""The writer's side of the indexed properties' value registries (:class:`ValueIds`): each value of a property
gets an id once, in Redis, the same for every writer (``register_values.lua``: atomic, capped at
``SEGMENT_MAX_VALUES``, first come first served, the values past the cap ``(other)``, id 0), and a writer keeps the
ids it learnt, which never change."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date
from typing import Any, Final

from activeusers.connections import Routed, pack_command
from activeusers.events import OTHER_VALUE
from activeusers.keys import OTHER_ID, KeySchema
from activeusers.scripts import REGISTER_VALUES

# Values per REGISTER_VALUES call (bounds the call's time on Redis' thread), and how many (property, value) ids a
# writer remembers before it starts over.
VALUES_CHUNK: Final = 1000
VALUE_MEMO: Final = 100_000

Send = Callable[[Iterable[Routed], Sequence[str]], list[Any]]


class ValueIds:
    """The ids of indexed properties' values, learnt from their registries (``KeySchema.values``)."""

    def __init__(self, keys: KeySchema, max_values: int) -> None:
        self._keys = keys
        self._max_values = max_values
        self._ids: dict[tuple[str, str], int] = {}

    def register(self, values: Collection[tuple[str, str]], send: Send) -> None:
        """Learn the id of every (property, value) of ``values``: one round trip (a call per property and
        VALUES_CHUNK values) for those not known yet. ``(other)`` itself is every property's id 0, never
        registered."""
        memo = self._ids
        if len(memo) + len(values) > VALUE_MEMO:
            memo.clear()
        unknown: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in values:
            if value == OTHER_VALUE:
                memo[(name, value)] = OTHER_ID
            elif (name, value) not in memo:
                unknown[name].append(value)
        if not unknown:
            return
        calls = [
            (name, found[start : start + VALUES_CHUNK])
            for name, found in unknown.items()
            for start in range(0, len(found), VALUES_CHUNK)
        ]
        commands = []
        for name, chunk in calls:
            key = self._keys.values(name)
            commands.append((key, pack_command(("EVALSHA", REGISTER_VALUES.sha, 1, key, self._max_values, *chunk))))
        for (name, chunk), ids in zip(calls, send(commands, (REGISTER_VALUES.source,)), strict=True):
            memo.update(((name, value), int(value_id)) for value, value_id in zip(chunk, ids, strict=True))

    def grouped(self, segments: Mapping[tuple[date, str, str], set[str]]) -> dict[tuple[date, str, int], set[str]]:
        """The users of ``segments`` per (day, property, value id), the values past the cap merged into
        ``(other)`` (every value registered first: :meth:`register`)."""
        found: dict[tuple[date, str, int], set[str]] = {}
        for (day, name, value), users in segments.items():
            key = (day, name, self._ids[(name, value)])
            # Values only merge past the cap (into "(other)"): a copy then, never of the batch's own sets.
            found[key] = found[key] | users if key in found else users
        return found
