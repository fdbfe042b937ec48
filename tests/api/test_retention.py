"""Retention and stickiness over masks (:mod:`api.retention`) against a brute-force oracle over sets of users."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.retention import active_days, retained, union

USERS = st.frozensets(st.integers(0, 300), max_size=40)


def mask(users: frozenset[int]) -> int:
    return sum(1 << user for user in users)


@given(st.lists(USERS, max_size=40))
def test_active_days_is_the_histogram_of_each_users_days(days: list[frozenset[int]]) -> None:
    everyone = set().union(*days)
    counts = {user: sum(user in day for day in days) for user in everyone}
    expected = [sum(1 for n in counts.values() if n == k) for k in range(1, len(days) + 1)]
    found = active_days([mask(day) for day in days])
    assert found == expected
    assert sum(found) == len(everyone) == union([mask(day) for day in days]).bit_count()


@given(USERS, st.lists(USERS, max_size=12))
def test_retained_counts_the_members_of_each_later_period(cohort: frozenset[int], later: list[frozenset[int]]) -> None:
    assert retained(mask(cohort), [mask(period) for period in later]) == [len(cohort & period) for period in later]


def test_no_days_no_users() -> None:
    assert active_days([]) == []
    assert active_days([0, 0]) == [0, 0]
    assert active_days([0b111, 0b110, 0b100]) == [1, 1, 1]
