"""Retention and stickiness computed by brute force from sets of users per day (the tests' oracle for
``/api/v1/active-users/retention`` and ``/stickiness``), by its own calendar code: a period is named by
``date.isocalendar()``'s week or the (year, month), and every day is walked one by one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any


def period_of(day: date, period: str) -> tuple[int, ...]:
    """A name of the period that holds ``day``."""
    if period == "week":
        year, week, _ = day.isocalendar()
        return (year, week)
    if period == "month":
        return (day.year, day.month)
    return (day.toordinal(),)


def _walk(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def retention(
    active: Mapping[date, set[str]],
    created: Mapping[date, set[str]],
    reported: list[date],
    stored: tuple[date, date],
    today: date,
    period: str = "week",
    cohort: str = "first",
    periods: int = 12,
    zone: str = "UTC",
    segment: Mapping[date, set[str]] | None = None,
) -> dict[str, Any]:
    """The retention answer for the ``reported`` days (the range clipped to the days that can hold data),
    ``stored``: the oldest and newest day that can hold data; ``segment``: the users active in a segment per day,
    when the question has one (members must be in it during their period, and return in it)."""
    if not reported:
        return {"timezone": zone, "period": period, "cohort": cohort, "start": None, "end": None, "cohorts": []}
    days = _walk(reported[0] - timedelta(days=40), today + timedelta(days=40 + 31 * min(periods, 24)))
    names: list[tuple[int, ...]] = []
    members_of: dict[tuple[int, ...], list[date]] = {}
    for day in days:
        name = period_of(day, period)
        if name not in members_of:
            names.append(name)
        members_of.setdefault(name, []).append(day)
    held = [day for day in days if stored[0] <= day <= stored[1]]
    first_day: dict[str, date] = {}
    for day in sorted(active):
        for user in active[day]:
            first_day.setdefault(user, day)

    def users(name: tuple[int, ...], sets: Mapping[date, set[str]]) -> set[str]:
        return set().union(*(sets.get(day, set()) for day in members_of[name] if day in held))

    inside = active if segment is None else segment
    cohorts = [name for i, name in enumerate(names) if name in {period_of(d, period) for d in reported}]
    rows = []
    for name in cohorts:
        at = names.index(name)
        if cohort == "first":
            members = {user for user, day in first_day.items() if period_of(day, period) == name and day in held}
        else:
            members = users(name, created if cohort == "new" else inside)
        if segment is not None:
            members &= users(name, inside)
        reach = max(0, min(periods, names.index(period_of(today, period)) - at))
        returned = [len(members & users(names[at + k], inside)) for k in range(reach + 1)]
        rows.append({"start": members_of[name][0].isoformat(), "size": len(members), "returned": returned})
    return {
        "timezone": zone,
        "period": period,
        "cohort": cohort,
        "start": members_of[cohorts[0]][0].isoformat(),
        "end": members_of[cohorts[-1]][-1].isoformat(),
        "cohorts": rows,
    }


def stickiness(active: Mapping[date, set[str]], reported: list[date], zone: str = "UTC") -> dict[str, Any]:
    """The stickiness answer for the ``reported`` days."""
    counts: dict[str, int] = {}
    for day in reported:
        for user in active.get(day, set()):
            counts[user] = counts.get(user, 0) + 1
    return {
        "timezone": zone,
        "start": reported[0].isoformat() if reported else None,
        "end": reported[-1].isoformat() if reported else None,
        "distinctUsers": len(counts),
        "activeDays": [sum(1 for n in counts.values() if n == k) for k in range(1, len(reported) + 1)],
    }
