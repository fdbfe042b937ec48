"""Retention cohorts and stickiness read from the index through one process' cache (:class:`Cohorts`): day masks
of the days' active, new and first-active users (:meth:`api.indexreads.IndexReads.day_masks`, kept per day under
its index version) ORed into period masks and counted by :mod:`api.retention`.

:func:`plan` says which periods a retention question lists and which days it reads, from explicit dates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

from activeusers.keys import MaskKind
from activeusers.periods import Period, next_start, period_end, period_start, period_starts, periods_apart
from api.indexreads import IndexReads, Versions
from api.retention import CohortRow, active_days, retained, union

Cohort = Literal["first", "new", "active"]
COHORTS: Final[tuple[Cohort, ...]] = ("first", "new", "active")
MAX_PERIODS: Final = 400


@dataclass(frozen=True, slots=True)
class Plan:
    """A retention question's cohort periods (their first days, oldest first), how many periods after its own
    each one reports (``reach``), the first and last day of every period the answer looks at, and the last day of
    the last cohort period."""

    starts: list[date]
    reach: list[int]
    first: date | None = None
    last: date | None = None
    end: date | None = None


def plan(first: date, last: date, period: Period, periods: int, today: date) -> Plan:
    """The cohort periods of the days ``first..last`` (already clipped to the days that can hold data) and the
    periods after each up to ``periods`` later, never wholly in the future (the cohort's own is always reported)."""
    starts = period_starts(first, last, period)
    if not starts:
        return Plan([], [])
    reach = [max(0, min(periods, periods_apart(start, today, period))) for start in starts]
    ends = [_advanced(start, count, period) for start, count in zip(starts, reach, strict=True)]
    return Plan(starts, reach, starts[0], period_end(max(ends), period), period_end(starts[-1], period))


def _advanced(start: date, count: int, period: Period) -> date:
    for _ in range(count):
        start = next_start(start, period)
    return start


class Cohorts:
    """Retention and stickiness of the index's days, counted from masks kept under the days' versions."""

    def __init__(self, reads: IndexReads) -> None:
        self._reads = reads

    async def retention(
        self,
        found: Plan,
        period: Period,
        cohort: Cohort,
        days: Sequence[date],
        versions: Versions,
        active_kind: MaskKind = "day",
    ) -> list[CohortRow]:
        """Each cohort period of ``found``, with its members and how many came back in each later period; ``days``:
        the days of its periods that can hold data, oldest first. ``active_kind`` a segment: "active" means active
        in it, so a period's members are also in the segment during the period."""
        active = dict(zip(days, await self._reads.day_masks(days, versions, active_kind), strict=True))
        members = active
        if cohort != "active" and found.starts:
            own_days = [day for day in days if day <= period_end(found.starts[-1], period)]
            members = dict(zip(own_days, await self._reads.day_masks(own_days, versions, cohort), strict=True))
        by_period: dict[date, list[date]] = {}
        for day in days:
            by_period.setdefault(period_start(day, period), []).append(day)
        period_mask = _memo(lambda start: union([active[day] for day in by_period.get(start, ())]))
        rows: list[CohortRow] = []
        for start, reach in zip(found.starts, found.reach, strict=True):
            own = union([members[day] for day in by_period.get(start, ())])
            if active_kind != "day" and members is not active:
                own &= period_mask(start)
            later, at = [], start
            for _ in range(reach + 1):
                later.append(period_mask(at))
                at = next_start(at, period)
            rows.append(CohortRow(start.isoformat(), own.bit_count(), retained(own, later)))
        return rows

    async def stickiness(
        self, days: Sequence[date], versions: Versions, kind: MaskKind = "day"
    ) -> tuple[int, list[int]]:
        """The distinct users of ``days`` and how many were active (or active in a segment: ``kind``) on exactly 1,
        2, ... ``len(days)`` of them."""
        masks = await self._reads.day_masks(days, versions, kind)
        counts = active_days(masks)
        return sum(counts), counts


def _memo(make: Callable[[date], int]) -> Callable[[date], int]:
    found: dict[date, int] = {}

    def get(start: date) -> int:
        if start not in found:
            found[start] = make(start)
        return found[start]

    return get
