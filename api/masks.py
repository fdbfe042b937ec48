"""One int per day (or hour) from the index's per-bucket bitmaps: pure functions.

A mask gives each user bucket a fixed span of bytes, the same in every mask of a :class:`Layout`, and holds the
bucket's bitmap in it (zero-padded), so an OR of masks is the union of their users and ``int.bit_count()``
counts them. Masks of different layouts must never be combined: a bucket's span moves when an earlier bucket's
span grows. Spans are rounded up (:data:`SPAN_STEP`) so a layout outlives the users numbered after it was made.
Bit order inside a span is Redis' own (the most significant bit of a byte first): counting does not care.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# Bytes a span grows by: room for 2,048 more users per bucket before a new layout (which drops cached masks).
SPAN_STEP: Final = 256


@dataclass(frozen=True, slots=True)
class Layout:
    """The span of each user bucket in a mask, in bytes."""

    spans: tuple[int, ...]

    @property
    def size(self) -> int:
        """Bytes of one mask."""
        return sum(self.spans)

    def covers(self, bitmaps: Sequence[Sequence[bytes]]) -> bool:
        """Whether every bitmap of ``bitmaps`` (``[bucket][position]``) fits in its bucket's span."""
        return len(bitmaps) == len(self.spans) and all(
            len(bitmap) <= span for span, found in zip(self.spans, bitmaps, strict=True) for bitmap in found
        )


def layout_for(bitmaps: Sequence[Sequence[bytes]], previous: Layout | None = None) -> Layout:
    """``previous`` if it covers ``bitmaps``, else a layout that covers both (spans rounded up to SPAN_STEP)."""
    if previous is not None and previous.covers(bitmaps):
        return previous
    old = previous.spans if previous is not None and len(previous.spans) == len(bitmaps) else (0,) * len(bitmaps)
    spans = []
    for span, found in zip(old, bitmaps, strict=True):
        longest = max(map(len, found), default=0)
        spans.append(span if longest <= span else -(-longest // SPAN_STEP) * SPAN_STEP)
    return Layout(tuple(spans))


def joined(bitmaps: Sequence[Sequence[bytes]], layout: Layout) -> list[int]:
    """The mask of each position of ``bitmaps`` (``[bucket][position]``, every bucket the same positions) in
    ``layout``, which must cover them."""
    positions = len(bitmaps[0]) if bitmaps else 0
    padded = [
        [bitmap.ljust(span, b"\0") for bitmap in found] for span, found in zip(layout.spans, bitmaps, strict=True)
    ]
    # Little-endian: int.from_bytes is about a third faster that way, and only the spans' alignment matters.
    return [int.from_bytes(b"".join(found[i] for found in padded), "little") for i in range(positions)]
