"""The rolling windows (bitmasks of one numbering, as the index makes them) against a brute-force oracle (unions
of day sets)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from api.windows import DayPoint, summarize, window_counts

ORIGIN = date(2025, 12, 20)


class Universe:
    """Numbers ids as the index does (densely, in order of appearance) and makes bitmasks of sets of them."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def mask(self, users: set[str]) -> int:
        found = 0
        for user in sorted(users):
            found |= 1 << self.numbers.setdefault(user, len(self.numbers))
        return found


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
)
def test_windows_match_brute_force(day_sets, report_index):
    days = {ORIGIN + timedelta(days=i): users for i, users in enumerate(day_sets)}
    last = ORIGIN + timedelta(days=len(day_sets) - 1)
    first = min(ORIGIN + timedelta(days=report_index), last)
    universe = Universe()
    points, distinct = summarize(ORIGIN, [universe.mask(users) for users in day_sets], first)
    assert (points, distinct) == oracle(days, first, last)


@settings(max_examples=300)
@given(st.lists(st.integers(0, 2**40), max_size=80), st.integers(1, 35), st.data())
def test_window_counts_match_brute_force(masks, width, data):
    # Any subset of positions: few take the direct ORs, many the block decomposition.
    wanted = sorted(data.draw(st.sets(st.integers(0, max(len(masks) - 1, 0)))) if masks else [])
    want = [bin(_or(masks[max(0, i - width + 1) : i + 1])).count("1") for i in wanted]
    assert window_counts(masks, width, wanted) == want


@settings(max_examples=100)
@given(st.lists(st.sets(st.sampled_from("abcdefgh"), max_size=5), min_size=1, max_size=45), st.data())
def test_known_points_are_kept_and_the_others_computed(day_sets, data):
    universe = Universe()
    masks = [universe.mask(users) for users in day_sets]
    points, distinct = summarize(ORIGIN, masks, ORIGIN)
    known = {p.day: p for p in data.draw(st.lists(st.sampled_from(points), unique_by=lambda p: p.day))}
    # A known point is taken as given (even one that no longer matches the masks: the caller vouches for it).
    marked = {day: DayPoint(day, -1, -1, -1) for day in known}
    again, distinct_again = summarize(ORIGIN, masks, ORIGIN, marked)
    assert again == [marked.get(p.day, p) for p in points]
    assert distinct_again == distinct


def _or(masks):
    found = 0
    for mask in masks:
        found |= mask
    return found


def test_windows_reach_back_before_the_report():
    universe = Universe()
    first = date(2026, 1, 3)  # 29 days before Feb 1: inside the MAU window
    sets = {first: {"jan3"}, date(2026, 1, 26): {"jan26"}, date(2026, 2, 1): {"feb1"}}
    masks = [universe.mask(sets.get(first + timedelta(days=i), set())) for i in range(31)]
    points, distinct = summarize(first, masks, date(2026, 2, 1))
    assert points == [DayPoint(date(2026, 2, 1), 1, 2, 3), DayPoint(date(2026, 2, 2), 0, 1, 2)]
    assert distinct == 1


def test_days_before_the_first_mask_count_as_empty():
    universe = Universe()
    points, distinct = summarize(ORIGIN, [universe.mask({"a"}), universe.mask({"b"})], ORIGIN - timedelta(days=3))
    assert points == [DayPoint(ORIGIN, 1, 1, 1), DayPoint(ORIGIN + timedelta(days=1), 1, 2, 2)]
    assert distinct == 2
