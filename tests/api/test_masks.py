"""Joining per-bucket bitmaps into masks: unions and counts equal the sets' whatever the bitmaps' lengths, and a
layout holds while the bitmaps fit in it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from api.masks import SPAN_STEP, Layout, joined, layout_for


def bitmap(numbers: set[int]) -> bytes:
    """A Redis bitmap with the bits of ``numbers`` set (SETBIT order: the most significant bit of byte 0 is 0)."""
    if not numbers:
        return b""
    found = bytearray(max(numbers) // 8 + 1)
    for n in numbers:
        found[n // 8] |= 0x80 >> (n % 8)
    return bytes(found)


# [bucket][position]: sets of user numbers, every bucket the same positions.
grids = st.integers(1, 4).flatmap(
    lambda positions: st.lists(
        st.lists(st.sets(st.integers(0, 3000), max_size=8), min_size=positions, max_size=positions),
        min_size=1,
        max_size=5,
    )
)


@settings(max_examples=200)
@given(grids)
def test_unions_of_masks_count_the_users_of_every_bucket(grid):
    bitmaps = [[bitmap(numbers) for numbers in bucket] for bucket in grid]
    masks = joined(bitmaps, layout_for(bitmaps))
    positions = len(grid[0])
    for i in range(positions):
        assert masks[i].bit_count() == sum(len(bucket[i]) for bucket in grid)
    union = 0
    for mask in masks:
        union |= mask
    assert union.bit_count() == sum(len(set().union(*bucket)) for bucket in grid)


def test_a_layout_holds_until_a_bitmap_outgrows_its_span():
    first = layout_for([[b"\x01" * 10], [b""]])
    assert first == Layout((SPAN_STEP, 0))
    assert layout_for([[b"\x01" * SPAN_STEP], [b""]], first) is first
    wider = layout_for([[b"\x01"], [b"\x80"]], first)
    assert wider == Layout((SPAN_STEP, SPAN_STEP)) and wider.size == 2 * SPAN_STEP
    assert layout_for([[b"\x01" * (SPAN_STEP + 1)], [b""]], wider).spans == (2 * SPAN_STEP, SPAN_STEP)
    # Another number of buckets is another layout altogether.
    assert layout_for([[b"\x01"]], wider) == Layout((SPAN_STEP,))


def test_masks_of_one_layout_line_up_across_fetches():
    """Two fetches of different lengths joined in one layout combine like the sets they hold."""
    layout = layout_for([[bitmap({5000})], [bitmap({3})]])
    earlier = joined([[bitmap({1, 2})], [bitmap({3})]], layout)[0]
    later = joined([[bitmap({2, 4999})], [bitmap({3, 4})]], layout)[0]
    assert (earlier | later).bit_count() == len({1, 2, 4999}) + len({3, 4})
    assert (earlier & later).bit_count() == 2  # user 2 of bucket 0 and user 3 of bucket 1
    assert joined([[], []], layout) == []  # no positions
