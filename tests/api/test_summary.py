"""The rolling windows against a brute-force oracle (unions of day sets)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.summary import DayPoint, RollingWindows

ORIGIN = date(2025, 12, 20)


def oracle(sets: dict[date, set[str]], first: date, last: date) -> tuple[list[DayPoint], int]:
    def union(a: date, b: date) -> set[str]:
        found: set[str] = set()
        for offset in range((b - a).days + 1):
            found |= sets.get(a + timedelta(days=offset), set())
        return found

    points = []
    day = first
    while day <= last:
        points.append(
            DayPoint(
                day,
                len(sets.get(day, set())),
                len(union(day - timedelta(days=6), day)),
                len(union(day - timedelta(days=29), day)),
            )
        )
        day += timedelta(days=1)
    return points, len(union(first, last))


@settings(max_examples=300)
@given(
    st.lists(st.sets(st.sampled_from([f"u{i}" for i in range(12)]), max_size=8), min_size=1, max_size=75),
    st.integers(0, 74),
    st.data(),
)
def test_windows_match_brute_force(day_sets, report_index, data):
    days = {ORIGIN + timedelta(days=i): users for i, users in enumerate(day_sets)}
    last = ORIGIN + timedelta(days=len(day_sets) - 1)
    first = min(ORIGIN + timedelta(days=report_index), last)
    # Feed a random subset of days: days not fed must count as empty days.
    fed = sorted(d for d in days if data.draw(st.booleans(), label=f"feed {d}") or d >= first)
    windows = RollingWindows(first)
    points = [p for d in fed if (p := windows.add(d, days[d])) is not None]
    kept = {d: days[d] for d in fed}
    want, distinct = oracle(kept, first, last)
    assert points == [p for p in want if p.day in kept]
    assert windows.distinct_users == distinct


def test_windows_reach_back_before_the_report():
    windows = RollingWindows(date(2026, 2, 1))
    assert windows.add(date(2026, 1, 3), {"jan3"}) is None  # 29 days before Feb 1: inside the MAU window
    assert windows.add(date(2026, 1, 26), {"jan26"}) is None  # 6 days before Feb 1: inside the WAU window
    assert windows.add(date(2026, 2, 1), {"feb1"}) == DayPoint(date(2026, 2, 1), 1, 2, 3)
    assert windows.add(date(2026, 2, 2), set()) == DayPoint(date(2026, 2, 2), 0, 1, 2)
    assert windows.distinct_users == 1


def test_days_must_be_fed_in_order():
    windows = RollingWindows(ORIGIN)
    windows.add(ORIGIN, {"a"})
    with pytest.raises(ValueError, match="increasing order"):
        windows.add(ORIGIN, {"a"})
