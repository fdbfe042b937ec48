"""The Users tab's windows and answers, from the index's counts: pure functions of explicit instants and counts.

The handlers (``api.routes.engagement``) decide which buckets can hold data, read their counts, and pass them
here. Rules and shapes are the wire contract's section 3 (see ``docs/api.md``); every function is unit-tested
with explicit instants in ``tests/api/test_dashboard.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final
from zoneinfo import ZoneInfo

from activeusers.days import HOUR_MS, WEEK_DAYS, HourSpan, day_start_ms, days_before, moment_day_diff
from activeusers.isotime import format_iso
from api.dates import local_day

WINDOW_MS: Final = 24 * HOUR_MS
# hourly-data's two-hour slots, newest label first as Rocket.Chat's chart expects them.
SLOT_HOURS: Final = tuple(range(22, -1, -2))


@dataclass(frozen=True, slots=True)
class NewUsersWindow:
    """What new-users covers: ``D``, the requested days and the previous period's days (inclusive bounds)."""

    limit: int
    first: date
    last: date
    previous_first: date
    previous_last: date

    @property
    def oldest(self) -> date:
        """The oldest day either period can use."""
        return min(self.first, self.previous_first)


def new_users_window(start_ms: int, end_ms: int, zone: ZoneInfo) -> NewUsersWindow:
    """``D`` (moment's whole-day diff plus one), ``[day(start), day(end)]`` and ``[day(start) - 1 - D,
    day(start) - 1]``; with ``D <= 0`` both periods are empty (first after last)."""
    limit = moment_day_diff(start_ms, end_ms, zone) + 1
    first, last = local_day(start_ms, zone), local_day(end_ms, zone)
    previous_last = days_before(first, 1)
    previous_first = days_before(previous_last, limit) if limit > 0 else first
    return NewUsersWindow(limit, first, last, previous_first, previous_last)


def _newest(counts: Mapping[date, int], first: date, last: date, limit: int) -> list[tuple[date, int]]:
    """The days of ``first..last`` with a nonzero count, newest first, at most ``limit`` of them."""
    found = sorted(((d, n) for d, n in counts.items() if n and first <= d <= last), reverse=True)
    return found[: max(limit, 0)]


def new_users_answer(window: NewUsersWindow, counts: Mapping[date, int], zone: ZoneInfo) -> dict[str, Any]:
    """The new-users body from the new-user counts of every day that can hold data of both periods."""
    days = _newest(counts, window.first, window.last, window.limit)
    previous = _newest(counts, window.previous_first, window.previous_last, window.limit)
    total = sum(n for _, n in days)
    listed = dict(days)
    yesterday = listed.get(days_before(window.last, 1), 0)
    return {
        "days": [{"day": format_iso(day_start_ms(d, zone)), "users": n} for d, n in days],
        "period": {"count": total, "variation": total - sum(n for _, n in previous)},
        "yesterday": {"count": yesterday, "variation": listed.get(window.last, 0) - yesterday},
        "success": True,
    }


def by_time_of_day_answer(counts: Mapping[tuple[date, int], int]) -> dict[str, Any]:
    """The users-by-time-of-the-day-in-a-week body: buckets with users, newest date first, hour descending."""
    week = []
    for (d, hour), n in sorted(counts.items(), reverse=True):
        if n:  # a loop, not a comprehension of a filtered generator: 2,160 buckets for a 90-day range
            week.append({"users": n, "hour": hour, "day": d.day, "month": d.month, "year": d.year})
    return {"week": week, "success": True}


def hourly_window(start_ms: int, zone: ZoneInfo) -> tuple[int, int, date, date]:
    """The window ``(start - 24 h, start]`` of hourly-data and the local days its buckets can belong to."""
    after = start_ms - WINDOW_MS
    return after, start_ms, local_day(after, zone), local_day(start_ms, zone)


def slot_groups(spans: Sequence[HourSpan]) -> list[list[tuple[date, int]]]:
    """For each slot of ``SLOT_HOURS``, the window's buckets of local hour h or h + 1."""
    groups: list[list[tuple[date, int]]] = [[] for _ in SLOT_HOURS]
    for span in spans:
        groups[len(SLOT_HOURS) - 1 - span.hour // 2].append((span.day, span.hour))
    return groups


def hourly_answer(slot_users: Sequence[int]) -> dict[str, Any]:
    """The hourly-data body from the distinct users of each slot (all 12 slots once any has users)."""
    if not any(slot_users):
        return {"hours": [], "success": True}
    return {
        "hours": [{"users": n, "hour": hour} for hour, n in zip(SLOT_HOURS, slot_users, strict=True)],
        "success": True,
    }


def weekly_days(start_ms: int, zone: ZoneInfo) -> tuple[date, date]:
    """The 8 days of weekly-data: ``day(start) - 7 .. day(start)``."""
    last = local_day(start_ms, zone)
    return days_before(last, WEEK_DAYS), last


def weekly_answer(counts: Mapping[date, int]) -> dict[str, Any]:
    """The weekly-data body: days with active users, newest first."""
    month = [
        {"users": n, "day": d.day, "month": d.month, "year": d.year}
        for d, n in sorted(counts.items(), reverse=True)
        if n
    ]
    return {"month": month, "success": True}
