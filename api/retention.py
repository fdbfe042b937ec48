"""Retention and stickiness from masks (one int per day, every user bucket side by side: :mod:`api.masks`): pure
functions, so a segment (a mask of its own) can later restrict any mask here by an AND.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from operator import or_


@dataclass(frozen=True, slots=True)
class CohortRow:
    """One cohort period: its first day, its members, and ``returned[k]``: the members active in period k after."""

    start: str
    size: int
    returned: list[int]


def union(masks: Sequence[int]) -> int:
    """The users of any of ``masks``."""
    return reduce(or_, masks, 0)


def retained(cohort: int, later: Sequence[int]) -> list[int]:
    """How many of the ``cohort``'s members are in each mask of ``later`` (its periods' active users, in order)."""
    return [(cohort & period).bit_count() for period in later]


def active_days(masks: Sequence[int]) -> list[int]:
    """Entry k-1: how many users are in exactly k of ``masks`` (k = 1..len(masks)).

    Bit-sliced counting: slice i holds bit i of every user's count, added to one mask at a time with ANDs and XORs
    (a ripple carry over the slices, whole masks at once); the histogram then splits the users by each slice in
    turn, dropping empty groups."""
    slices: list[int] = []
    for mask in masks:
        carry = mask
        for i, bits in enumerate(slices):
            if not carry:
                break
            slices[i], carry = bits ^ carry, bits & carry
        if carry:
            slices.append(carry)
    counts = [0] * len(masks)
    _split(union(masks), slices, len(slices) - 1, 0, counts)
    return counts


def _split(users: int, slices: list[int], bit: int, value: int, counts: list[int]) -> None:
    """Add the ``users`` to ``counts`` by their count, whose bits above ``bit`` make ``value``."""
    if not users:
        return
    if bit < 0:
        counts[value - 1] += users.bit_count()
        return
    ones = users & slices[bit]
    _split(ones, slices, bit - 1, value | 1 << bit, counts)
    _split(users ^ ones, slices, bit - 1, value, counts)
