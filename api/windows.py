"""Exact rolling distinct-user windows (DAU, WAU, MAU) over consecutive day sets given as bitmasks: pure computation.

WAU of day ``d`` is the number of distinct users active on any of the 7 days ``d-6..d``; MAU the same over the
30 days ``d-29..d``. Each day is a bitmask of the index (:meth:`api.indexreads.IndexReads.day_masks`: every
user bucket's day bitmap side by side, one bit per numbered user), so a union is an OR of ints and a count is
``int.bit_count()``: no per-member work at all here.

A sliding window of ORs (which cannot be undone like a sum) uses the classic block decomposition: cut the days
into blocks of the window's width, OR each block from the left (prefixes) and from the right (suffixes); the
window ending at day i is then ``suffix[i - width + 1] | prefix[i]``. That is three ORs per day and window,
whatever the width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import reduce
from operator import or_
from typing import Final

from activeusers.days import WEEK_DAYS

MONTH_DAYS: Final = 30
# How many days before the first reported day feed its windows.
LOOKBACK_DAYS: Final = MONTH_DAYS - 1


@dataclass(frozen=True, slots=True)
class DayPoint:
    """The exact counts of one day."""

    day: date
    dau: int
    wau: int
    mau: int


def window_counts(masks: Sequence[int], width: int, wanted: Sequence[int]) -> list[int]:
    """For every i of ``wanted``, the number of users in the union of ``masks[max(0, i - width + 1)..i]``."""
    if len(wanted) * width <= 3 * len(masks):
        # Few windows (a warm request misses today only): ORing each window costs less than the blocks.
        return [reduce(or_, masks[max(0, i - width + 1) : i + 1], 0).bit_count() for i in wanted]
    count = len(masks)
    prefix = list(masks)
    suffix = list(masks)
    for i in range(1, count):
        if i % width:
            prefix[i] |= prefix[i - 1]
    for i in range(count - 2, -1, -1):
        if (i + 1) % width:
            suffix[i] |= suffix[i + 1]
    return [(prefix[i] if i < width - 1 else suffix[i - width + 1] | prefix[i]).bit_count() for i in wanted]


def summarize(
    first: date, masks: Sequence[int], report_from: date, known: Mapping[date, DayPoint] | None = None
) -> tuple[list[DayPoint], int]:
    """The points of the days from ``report_from`` on, and their distinct users.

    ``masks[i]`` holds the users of day ``first + i`` (consecutive days, oldest first); days before
    ``report_from`` only fill the windows, and days before ``first`` count as days without users. The points of
    ``known`` (computed before from the same masks) are taken as they are.
    """
    known = known or {}
    offset = max((report_from - first).days, 0)
    wanted = [i for i in range(offset, len(masks)) if first + timedelta(days=i) not in known]
    weeks = window_counts(masks, WEEK_DAYS, wanted)
    months = window_counts(masks, MONTH_DAYS, wanted)
    computed = {
        i: DayPoint(first + timedelta(days=i), masks[i].bit_count(), week, month)
        for i, week, month in zip(wanted, weeks, months, strict=True)
    }
    points = [computed[i] if i in computed else known[first + timedelta(days=i)] for i in range(offset, len(masks))]
    return points, reduce(or_, masks[offset:], 0).bit_count()


def encoded_point(point: DayPoint, digest: str) -> str:
    """``point`` as kept for other processes: the digest of what it was computed from, then its counts."""
    return f"{digest} {point.dau} {point.wau} {point.mau}"


def decoded_point(day: date, text: str | None, digest: str) -> DayPoint | None:
    """The point of ``day`` kept as ``text`` by :func:`encoded_point`, if it was computed from ``digest``."""
    if text is None:
        return None
    parts = text.split(" ")
    if len(parts) != 4 or parts[0] != digest or not all(part.isdigit() for part in parts[1:]):
        return None  # computed from other data, or not ours
    return DayPoint(day, int(parts[1]), int(parts[2]), int(parts[3]))
