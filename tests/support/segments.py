"""The tests' oracle for breakdowns and segments, by brute force from who had which property value on which day:
``{(day, value): users}`` for one property, built from the events sent (a user in several values of a day is in
each)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.oracle import _ts_ms

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


def values_of(
    events: Iterable[Mapping[str, Any]], days: Mapping[date, set[str]], zone: str, name: str = "platform"
) -> dict[tuple[date, str], set[str]]:
    """``{(day, value): users}`` of property ``name`` from the events sent: a counted event of a user the oracle
    has active on its day (``days``, from :func:`tests.support.oracle.activity`) with a valid value (a string of
    1 to 64 characters)."""
    found: dict[tuple[date, str], set[str]] = {}
    for event in events:
        properties = event.get("properties")
        value = properties.get(name) if isinstance(properties, dict) else None
        if event["type"] not in {"login", "activity", "logout"} or not isinstance(value, str) or not value:
            continue
        if event.get("roles") and all(role == "anonymous" for role in event["roles"]):
            continue
        day = datetime.fromtimestamp(_ts_ms(event["ts"]) / 1000, tz=ZoneInfo(zone)).date()
        if len(value) > 64:
            continue
        if event["userId"] in days.get(day, set()):
            found.setdefault((day, value), set()).add(event["userId"])
    return found


def capped(values: Mapping[tuple[date, str], set[str]], registered: set[str]) -> dict[tuple[date, str], set[str]]:
    """``values`` with every value not in the registry counted as ``(other)``."""
    found: dict[tuple[date, str], set[str]] = {}
    for (day, value), users in values.items():
        found.setdefault((day, value if value in registered else "(other)"), set()).update(users)
    return found
