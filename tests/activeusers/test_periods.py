"""Periods of local days (:mod:`activeusers.periods`): ISO weeks and calendar months on explicit dates, around a DST
change inside a week, a month boundary, a week spanning a year boundary and a leap day."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from activeusers.periods import Period, next_start, period_end, period_start, period_starts, periods_apart


@pytest.mark.parametrize(
    ("day", "period", "start", "end"),
    [
        (date(2026, 3, 29), "week", date(2026, 3, 23), date(2026, 3, 29)),  # Europe's spring DST Sunday
        (date(2026, 3, 30), "week", date(2026, 3, 30), date(2026, 4, 5)),
        (date(2026, 10, 25), "week", date(2026, 10, 19), date(2026, 10, 25)),  # Europe's autumn DST Sunday
        (date(2026, 11, 1), "week", date(2026, 10, 26), date(2026, 11, 1)),  # a week across a month boundary
        (date(2027, 1, 1), "week", date(2026, 12, 28), date(2027, 1, 3)),  # across a year boundary (ISO week 53)
        (date(2026, 12, 31), "week", date(2026, 12, 28), date(2027, 1, 3)),
        (date(2028, 2, 29), "week", date(2028, 2, 28), date(2028, 3, 5)),  # a leap day
        (date(2028, 2, 29), "month", date(2028, 2, 1), date(2028, 2, 29)),
        (date(2027, 2, 14), "month", date(2027, 2, 1), date(2027, 2, 28)),
        (date(2026, 12, 31), "month", date(2026, 12, 1), date(2026, 12, 31)),
        (date(2026, 3, 29), "month", date(2026, 3, 1), date(2026, 3, 31)),  # DST inside the month
        (date(2026, 3, 29), "day", date(2026, 3, 29), date(2026, 3, 29)),
        (date(2028, 2, 29), "day", date(2028, 2, 29), date(2028, 2, 29)),
    ],
)
def test_the_period_of_a_day(day: date, period: Period, start: date, end: date) -> None:
    assert period_start(day, period) == start
    assert period_end(start, period) == end
    assert next_start(start, period) == end + timedelta(days=1)
    assert start.weekday() == 0 if period == "week" else True
    assert periods_apart(start, day, period) == 0


@pytest.mark.parametrize(
    ("first", "last", "period", "starts"),
    [
        (date(2026, 12, 30), date(2027, 1, 12), "week", [date(2026, 12, 28), date(2027, 1, 4), date(2027, 1, 11)]),
        (
            date(2026, 11, 30),
            date(2027, 2, 1),
            "month",
            [date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)],
        ),
        (date(2028, 2, 28), date(2028, 3, 1), "day", [date(2028, 2, 28), date(2028, 2, 29), date(2028, 3, 1)]),
        (date(2026, 5, 5), date(2026, 5, 4), "week", []),
        (date(2026, 5, 5), date(2026, 5, 5), "month", [date(2026, 5, 1)]),
    ],
)
def test_the_periods_of_a_range(first: date, last: date, period: Period, starts: list[date]) -> None:
    assert period_starts(first, last, period) == starts
    assert [periods_apart(starts[0], start, period) for start in starts] == list(range(len(starts)))


def test_periods_apart_counts_whole_periods_either_way() -> None:
    assert periods_apart(date(2026, 12, 31), date(2027, 1, 4), "week") == 1
    assert periods_apart(date(2027, 1, 4), date(2026, 12, 31), "week") == -1
    assert periods_apart(date(2026, 12, 31), date(2027, 1, 1), "month") == 1
    assert periods_apart(date(2026, 1, 31), date(2027, 3, 1), "month") == 14
    assert periods_apart(date(2028, 2, 28), date(2028, 3, 1), "day") == 2
