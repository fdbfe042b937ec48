"""The day cache's own rules, without services: validity by the day's index version, age limit, byte budget."""

from __future__ import annotations

from datetime import date, timedelta

from api.daycache import DayCache

DAY = date(2026, 3, 1)
# Index versions as the writer makes them (a writer's random id and a sequence number); None: a day never written.
V1 = "5f0c2a9e4b1d7a30.1"
V2 = "5f0c2a9e4b1d7a30.2"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hit_while_the_version_is_unchanged():
    cache = DayCache(1 << 20, 60)
    assert cache.fragment(DAY, V1) is None
    cache.put_fragment(DAY, V1, b"two")
    assert cache.fragment(DAY, V1) == b"two"
    assert cache.fragment(DAY + timedelta(days=1), V1) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_new_version_drops_the_entry():
    cache = DayCache(1 << 20, 60)
    cache.put_fragment(DAY, V1, b"two")
    assert cache.fragment(DAY, V2) is None
    # Dropped, not kept for the old version: a replaced token never comes back.
    assert cache.fragment(DAY, V1) is None
    assert len(cache) == 0
    assert cache.size_bytes == 0


def test_a_day_never_written_is_kept_empty_until_its_first_version():
    cache = DayCache(1 << 20, 60)
    cache.put_fragment(DAY, None, b"")
    assert cache.fragment(DAY, None) == b""  # a hit: no users, nothing to read
    assert cache.fragment(DAY, V1) is None  # its first write
    assert len(cache) == 0


def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = DayCache(1 << 20, 60, clock)
    cache.put_fragment(DAY, V1, b"x")
    clock.now += 59.9
    assert cache.fragment(DAY, V1) == b"x"
    clock.now += 0.1
    assert cache.fragment(DAY, V1) is None
    assert len(cache) == 0


def test_least_recently_used_entries_leave_first_within_the_byte_budget():
    cache = DayCache(3 * 1200, 60)
    days = [DAY + timedelta(days=i) for i in range(4)]
    for day in days[:3]:
        cache.put_fragment(day, V1, b"x" * 1000)
    assert cache.fragment(days[0], V1) is not None  # now the most recently used
    cache.put_fragment(days[3], V1, b"x" * 1000)
    assert [cache.fragment(day, V1) is not None for day in days] == [True, False, True, True]
    assert cache.size_bytes <= cache.max_bytes


def test_a_new_fragment_of_a_day_replaces_its_entry():
    cache = DayCache(1 << 20, 60)
    cache.put_fragment(DAY, V1, b"x" * 100)
    cache.put_fragment(DAY, V2, b"y" * 300)
    assert len(cache) == 1
    assert cache.fragment(DAY, V2) == b"y" * 300
    assert cache.fragment(DAY, V1) is None


def test_a_value_bigger_than_the_budget_is_not_kept():
    cache = DayCache(500, 60)
    cache.put_fragment(DAY, V1, b"x" * 1000)
    assert cache.fragment(DAY, V1) is None
    assert cache.size_bytes == 0


def test_zero_bytes_turns_the_cache_off():
    cache = DayCache(0, 60)
    assert not cache.enabled
    cache.put_fragment(DAY, V1, b"x")
    assert cache.fragment(DAY, V1) is None
    assert len(cache) == 0
