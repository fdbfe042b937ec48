"""The tests' oracle for breakdowns and segments, by brute force from who had which property value on which day:
``{(day, value): users}`` for one property, built from the events sent (a user in several values of a day is in
each)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

Values = Mapping[tuple[date, str], set[str]]


def in_value(values: Values, value: str) -> dict[date, set[str]]:
    """The users of ``value`` per day."""
    return {day: set(users) for (day, found), users in values.items() if found == value}


def breakdown(values: Values, reported: list[date], name: str = "platform", zone: str = "UTC") -> dict[str, Any]:
    """The breakdown answer (without ``success``) of the ``reported`` days."""
    rows = []
    for value in sorted({found for _, found in values}):
        per_day = in_value(values, value)
        distinct = set().union(*(per_day.get(day, set()) for day in reported))
        if distinct:
            days = [{"date": day.isoformat(), "dau": len(per_day.get(day, set()))} for day in reported]
            rows.append({"value": value, "distinctUsers": len(distinct), "days": days})
    rows.sort(key=lambda row: (-row["distinctUsers"], row["value"]))
    return {
        "timezone": zone,
        "start": reported[0].isoformat() if reported else None,
        "end": reported[-1].isoformat() if reported else None,
        "property": name,
        "values": rows,
    }


def summary(sets: Mapping[date, set[str]], reported: list[date], zone: str = "UTC") -> dict[str, Any]:
    """The summary answer (without ``success``) of the ``reported`` days over per-day user sets."""

    def union(days: Iterable[date]) -> set[str]:
        return set().union(*(sets.get(day, set()) for day in days))

    def window(day: date, width: int) -> list[date]:
        return [day - timedelta(days=n) for n in range(width)]

    return {
        "timezone": zone,
        "start": reported[0].isoformat() if reported else None,
        "end": reported[-1].isoformat() if reported else None,
        "distinctUsers": len(union(reported)),
        "days": [
            {
                "date": day.isoformat(),
                "dau": len(sets.get(day, set())),
                "wau": len(union(window(day, 7))),
                "mau": len(union(window(day, 30))),
            }
            for day in reported
        ],
    }
