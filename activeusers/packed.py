"""Packed user numbers, as the writer remembers them (a user bucket above its number in the bucket), and the
splits its calls need: per bucket, and per call.

A batch's users become lists of local numbers per bucket by C-level steps only (``map`` over the memo, a sort, a
bisect per bucket, ``map`` of the mask): the per-event cost of the consumer's store worker is what ingest
throughput is made of, and a Python loop per user and bitmap was a third of it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Final

# A bitmap has at most 2**32 bits, so a bucket's numbers fit below bit 32.
NUMBER_BITS: Final = 32
NUMBER_MASK: Final = (1 << NUMBER_BITS) - 1
# Bits per call: bounds one call's time on Redis' thread (and the arguments of Lua's unpack).
BITS_CHUNK: Final = 2000

_local = NUMBER_MASK.__and__


def pack(bucket: int, number: int) -> int:
    """The packed form of ``number`` of user bucket ``bucket``."""
    return bucket << NUMBER_BITS | number


def by_bucket(packed: Sequence[int]) -> Iterator[tuple[int, list[int]]]:
    """The (bucket, ascending local numbers) of ``packed``, which must be sorted, one per bucket present."""
    start, end = 0, len(packed)
    if end == 1:
        yield packed[0] >> NUMBER_BITS, [packed[0] & NUMBER_MASK]
        return
    while start < end:
        bucket = packed[start] >> NUMBER_BITS
        stop = bisect_left(packed, (bucket + 1) << NUMBER_BITS, start)
        yield bucket, list(map(_local, packed[start:stop]))
        start = stop


def chunks(numbers: list[int]) -> Sequence[list[int]]:
    """``numbers`` in slices of at most ``BITS_CHUNK``."""
    if len(numbers) <= BITS_CHUNK:
        return (numbers,)
    return [numbers[start : start + BITS_CHUNK] for start in range(0, len(numbers), BITS_CHUNK)]
