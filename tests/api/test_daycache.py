"""The day cache's own rules, without services: validity by cardinality, age limit, byte budget."""

from __future__ import annotations

from datetime import date, timedelta

from api.daycache import DayCache

DAY = date(2026, 3, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hit_while_the_cardinality_is_unchanged():
    cache = DayCache(1 << 20, 60)
    assert cache.fragment(DAY, 2) is None
    cache.put_fragment(DAY, 2, b"two")
    assert cache.fragment(DAY, 2) == b"two"
    assert cache.fragment(DAY + timedelta(days=1), 2) is None


def test_a_changed_cardinality_drops_the_entry():
    cache = DayCache(1 << 20, 60)
    cache.put_fragment(DAY, 2, b"two")
    assert cache.fragment(DAY, 3) is None
    # Dropped, not kept for the old count: a set never shrinks back to it.
    assert cache.fragment(DAY, 2) is None
    assert len(cache) == 0
    assert cache.size_bytes == 0


def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = DayCache(1 << 20, 60, clock)
    cache.put_fragment(DAY, 1, b"x")
    clock.now += 59.9
    assert cache.fragment(DAY, 1) == b"x"
    clock.now += 0.1
    assert cache.fragment(DAY, 1) is None
    assert len(cache) == 0


def test_least_recently_used_entries_leave_first_within_the_byte_budget():
    cache = DayCache(3 * 1200, 60)
    days = [DAY + timedelta(days=i) for i in range(4)]
    for day in days[:3]:
        cache.put_fragment(day, 1, b"x" * 1000)
    assert cache.fragment(days[0], 1) is not None  # now the most recently used
    cache.put_fragment(days[3], 1, b"x" * 1000)
    assert [cache.fragment(day, 1) is not None for day in days] == [True, False, True, True]
    assert cache.size_bytes <= cache.max_bytes


def test_a_value_bigger_than_the_budget_is_not_kept():
    cache = DayCache(500, 60)
    cache.put_fragment(DAY, 1, b"x" * 1000)
    assert cache.fragment(DAY, 1) is None
    assert cache.size_bytes == 0


def test_zero_bytes_turns_the_cache_off():
    cache = DayCache(0, 60)
    assert not cache.enabled
    cache.put_fragment(DAY, 1, b"x")
    assert cache.fragment(DAY, 1) is None
    assert len(cache) == 0
