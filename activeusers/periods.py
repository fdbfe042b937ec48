"""Periods of local calendar days: ISO weeks (Monday to Sunday) and calendar months, pure functions of dates.

Days here are already local dates of ``ACTIVITY_TIMEZONE`` (:func:`activeusers.days.day_of`), so a period is
plain calendar arithmetic: a DST change inside a week or a month changes the length of one day, never which days
the period holds.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final, Literal

Period = Literal["day", "week", "month"]
PERIODS: Final[tuple[Period, ...]] = ("day", "week", "month")


def period_start(day: date, period: Period) -> date:
    """The first day of the ``period`` that contains ``day``."""
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def next_start(start: date, period: Period) -> date:
    """The first day of the period after the one that starts on ``start``."""
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start + timedelta(days=1)


def period_end(start: date, period: Period) -> date:
    """The last day of the period that starts on ``start``."""
    return next_start(start, period) - timedelta(days=1)


def period_starts(first: date, last: date, period: Period) -> list[date]:
    """The first days of the periods from the one containing ``first`` to the one containing ``last``, oldest
    first (none when ``last`` is before ``first``)."""
    starts: list[date] = []
    start, end = period_start(first, period), period_start(last, period)
    while start <= end and first <= last:
        starts.append(start)
        start = next_start(start, period)
    return starts


def periods_apart(earlier: date, later: date, period: Period) -> int:
    """How many periods the one containing ``later`` comes after the one containing ``earlier`` (negative when
    before)."""
    if period == "week":
        return (period_start(later, period) - period_start(earlier, period)).days // 7
    if period == "month":
        return (later.year - earlier.year) * 12 + later.month - earlier.month
    return (later - earlier).days
