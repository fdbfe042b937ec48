"""Packed user numbers (pure logic): a bucket above its number, split per bucket and per call."""

from __future__ import annotations

import random

import pytest

from activeusers.packed import BITS_CHUNK, NUMBER_MASK, by_bucket, chunks, pack


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ([], []),
        ([(3, 7)], [(3, [7])]),
        ([(0, 1), (0, 2), (5, 0), (5, NUMBER_MASK)], [(0, [1, 2]), (5, [0, NUMBER_MASK])]),
        ([(1, 4), (2, 4), (3, 4)], [(1, [4]), (2, [4]), (3, [4])]),
    ],
)
def test_by_bucket_splits_sorted_packed_numbers(numbers: list[tuple[int, int]], expected: object) -> None:
    assert list(by_bucket(sorted(pack(b, n) for b, n in numbers))) == expected


def test_by_bucket_equals_a_plain_grouping() -> None:
    rng = random.Random(7)
    numbers = {(rng.randrange(16), rng.randrange(10_000)) for _ in range(3000)}
    grouped: dict[int, list[int]] = {}
    for bucket, number in sorted(numbers):
        grouped.setdefault(bucket, []).append(number)
    assert list(by_bucket(sorted(pack(b, n) for b, n in numbers))) == list(grouped.items())


def test_chunks_bound_a_call() -> None:
    assert chunks([1, 2]) == ([1, 2],)
    assert [len(chunk) for chunk in chunks(list(range(2 * BITS_CHUNK + 1)))] == [BITS_CHUNK, BITS_CHUNK, 1]
