"""Indexed properties through one process' cache (:class:`Segments`): the ``segment=p:v`` parameter resolved to a
value id of the property's registry, and the breakdown of a range by a property's values, counted from the index
(the days' per-value counters for the DAU, unions in Redis for each value's distinct users)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from activeusers.events import OTHER_VALUE
from activeusers.keys import OTHER_ID, Segment
from api.indexreads import IndexReads, Versions

# The id a segment of a value no registry holds resolves to: no key has it, so every count of it is 0.
UNKNOWN_ID: Final = -1


def segment_parts(text: str) -> tuple[str, str] | None:
    """The property and value of a ``segment`` parameter (split at the first ``:``), ``None`` when either is
    empty or there is no ``:``."""
    name, sep, value = text.partition(":")
    return (name, value) if sep and name and value else None


@dataclass(frozen=True, slots=True)
class ValueRow:
    """One value of a breakdown: its distinct users over the range and its users on each day."""

    value: str
    distinct: int
    daily: list[int]


class Segments:
    """Resolves segments and breaks ranges down by value, with each property's registry as this process last
    read it (a registry only grows, so it is read again only when a value or id is not in it yet)."""

    def __init__(self, reads: IndexReads) -> None:
        self._reads = reads
        self._values: dict[str, dict[str, int]] = {}

    async def segment(self, name: str, value: str) -> Segment:
        """The segment of ``value`` of property ``name`` (an unknown value: an id no key has, so zeros)."""
        if value == OTHER_VALUE:
            return Segment(name, OTHER_ID)
        found = self._values.get(name, {}).get(value)
        if found is None:
            found = (await self._registry(name)).get(value, UNKNOWN_ID)
        return Segment(name, found)

    async def breakdown(self, name: str, days: Sequence[date], versions: Versions) -> list[ValueRow]:
        """The values of property ``name`` with a user on ``days``: by distinct users descending, then value."""
        if not days:
            return []
        counters = await self._reads.segment_counters(name, days, versions)
        ids = sorted({value_id for found in counters for value_id, users in enumerate(found) if users})
        if not ids:
            return []
        distinct = await self._reads.segment_union_counts(name, ids, days, versions)
        names = {value_id: value for value, value_id in self._values.get(name, {}).items()}
        if any(value_id not in names for value_id in ids if value_id != OTHER_ID):
            names = {value_id: value for value, value_id in (await self._registry(name)).items()}
        names[OTHER_ID] = OTHER_VALUE
        rows = [
            ValueRow(names.get(value_id, f"#{value_id}"), users, [_at(found, value_id) for found in counters])
            for value_id, users in zip(ids, distinct, strict=True)
        ]
        return sorted(rows, key=lambda row: (-row.distinct, row.value))

    async def _registry(self, name: str) -> dict[str, int]:
        found = self._values[name] = await self._reads.reader.property_values(name)
        return found


def _at(counters: tuple[int, ...], value_id: int) -> int:
    return counters[value_id] if value_id < len(counters) else 0
