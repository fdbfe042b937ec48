"""The users tab's answers expected from the events' buckets: what new-users, users-by-time-of-the-day-in-a-week,
hourly-data and weekly-data must say."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.support.events import iso

# The oracles below work on the events' buckets with plain datetime arithmetic on a 15-minute grid (every offset
# in use is a multiple of 15 minutes), not with the service's window functions.

SLOT_MS = 900_000


def local_hour(ms: int, zone: ZoneInfo) -> tuple[date, int]:
    """The (local day, hour) bucket of an instant in ``zone``."""
    local = datetime.fromtimestamp(ms / 1000, tz=zone)
    return local.date(), local.hour


def local_ms(day: date, zone: ZoneInfo, *clock: int) -> int:
    """The instant of a local wall-clock time (midnight when ``clock`` is empty) of ``day`` in ``zone``."""
    return int(datetime(day.year, day.month, day.day, *clock, tzinfo=zone).timestamp() * 1000)


def _grid(first_ms: int, last_ms: int) -> range:
    """The 15-minute grid instants of [first_ms, last_ms]."""
    return range(-(-first_ms // SLOT_MS) * SLOT_MS, last_ms + 1, SLOT_MS)


def expected_new_users(created: dict[date, set[str]], start: int, end: int, zone: ZoneInfo) -> dict[str, object]:
    # moment's diff in days is the difference of the two local wall-clock times.
    wall = datetime.fromtimestamp(end / 1000, tz=zone).replace(tzinfo=None) - datetime.fromtimestamp(
        start / 1000, tz=zone
    ).replace(tzinfo=None)
    elapsed_ms = wall // timedelta(milliseconds=1)
    limit = int(elapsed_ms / 86_400_000) + 1
    first, last = local_hour(start, zone)[0], local_hour(end, zone)[0]

    def newest(low: date, high: date) -> list[tuple[date, int]]:
        return sorted(((d, len(u)) for d, u in created.items() if low <= d <= high and u), reverse=True)[
            : max(limit, 0)
        ]

    days = newest(first, last)
    previous = newest(first - timedelta(days=1 + limit), first - timedelta(days=1)) if limit > 0 else []
    listed = dict(days)
    yesterday = listed.get(last - timedelta(days=1), 0)
    return {
        "days": [{"day": iso(local_ms(d, zone)), "users": n} for d, n in days],
        "period": {"count": sum(listed.values()), "variation": sum(listed.values()) - sum(n for _, n in previous)},
        "yesterday": {"count": yesterday, "variation": listed.get(last, 0) - yesterday},
        "success": True,
    }


def expected_by_time_of_day(
    hours: dict[tuple[date, int], set[str]], start: int, end: int, zone: ZoneInfo
) -> dict[str, object]:
    overlapping = {local_hour(t, zone) for t in (start, end, *_grid(start, end))} if start <= end else set()
    week = [
        {"users": len(hours[b]), "hour": b[1], "day": b[0].day, "month": b[0].month, "year": b[0].year}
        for b in sorted(overlapping, reverse=True)
        if hours.get(b)
    ]
    return {"week": week, "success": True}


def expected_hourly(hours: dict[tuple[date, int], set[str]], start: int, zone: ZoneInfo) -> dict[str, object]:
    # A bucket starts at the first grid instant carrying its label; the window is (start - 24 h, start].
    starting = {
        local_hour(t, zone)
        for t in _grid(start - 86_400_000 + 1, start)
        if local_hour(t - SLOT_MS, zone) != local_hour(t, zone)
    }
    slots = []
    for hour in range(22, -1, -2):
        users: set[str] = set()
        for b in starting:
            if b[1] in (hour, hour + 1):
                users |= hours.get(b, set())
        slots.append({"users": len(users), "hour": hour})
    return {"hours": slots if any(s["users"] for s in slots) else [], "success": True}


def expected_weekly(days: dict[date, set[str]], start: int, zone: ZoneInfo) -> dict[str, object]:
    last = local_hour(start, zone)[0]
    week = [last - timedelta(days=n) for n in range(8)]
    month = [{"users": len(days[d]), "day": d.day, "month": d.month, "year": d.year} for d in week if days.get(d)]
    return {"month": month, "success": True}
