"""Exact rolling distinct-user windows (DAU, WAU, MAU) over a sequence of day sets: pure computation.

WAU of day ``d`` is the number of distinct users active on any of the 7 days ``d-6..d``; MAU the same over the
30 days ``d-29..d``. Instead of one counter per window, every user remembers the last day it was seen and every
day counts the users last seen on it: the users of a window ending at the newest day fed are exactly those last
seen inside it. So each member of each day set costs a constant number of dict operations, whatever the window
sizes, and memory holds one entry per distinct user rather than 30 days of sets.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

WEEK_DAYS: Final = 7
MONTH_DAYS: Final = 30
# How many days before the first reported day feed its windows.
LOOKBACK_DAYS: Final = MONTH_DAYS - 1


@dataclass(frozen=True, slots=True)
class DayPoint:
    """The exact counts of one day."""

    day: date
    dau: int
    wau: int
    mau: int


class RollingWindows:
    """Feed day sets oldest first; get each day's point from ``report_from`` on, and the range's distinct users.

    Days before ``report_from`` (up to :data:`LOOKBACK_DAYS` of them matter) only fill the windows. Days not fed
    count as days without users.
    """

    def __init__(self, report_from: date) -> None:
        self._origin = report_from
        self._last_seen: dict[str, int] = {}
        self._last_seen_on: dict[int, int] = {}
        self._newest: int | None = None

    def add(self, day: date, users: Set[str]) -> DayPoint | None:
        """Feed one day's users; its point, or ``None`` for a day before ``report_from``."""
        index = (day - self._origin).days
        if self._newest is not None and index <= self._newest:
            raise ValueError(f"days must be fed in increasing order: {day} after {self._origin + timedelta(index)}")
        self._newest = index
        last_seen_on = self._last_seen_on
        for user in users:
            previous = self._last_seen.get(user)
            if previous is not None:
                left = last_seen_on[previous] - 1
                if left:
                    last_seen_on[previous] = left
                else:
                    # Keeps the per-day map as small as the number of days that still hold someone's last visit.
                    del last_seen_on[previous]
            self._last_seen[user] = index
        if users:
            last_seen_on[index] = len(users)
        if index < 0:
            return None
        week = self._seen_since(index - WEEK_DAYS + 1)
        return DayPoint(day, len(users), week, self._seen_since(index - MONTH_DAYS + 1))

    @property
    def distinct_users(self) -> int:
        """Distinct users over the days fed from ``report_from`` on."""
        return self._seen_since(0)

    def _seen_since(self, first: int) -> int:
        return sum(count for index, count in self._last_seen_on.items() if index >= first)
