"""Sizing: Redis memory at 10k, 100k, 1M and 10M daily active users, computed from measured per-key figures.

Pure functions over the :class:`~memory.KindFigures` that ``bench/memory.py`` measures (``bench/compare.py``
calls them for both sides and writes the table into ``docs/keys.md`` and BENCHMARKS.md). The model, per kind:

- sets (day sets, and today's hour and new-user sets): measured bytes per member times members per day, which
  scale with the daily active users;
- bitmaps: measured per-key overhead times keys per day, plus the measured bitmap bytes per day, which scale
  with the *numbered* users (every user ever seen, not only the day's): numbered = daily active times the
  dataset's ratio (500k users for 100k daily active: 5);
- undated hashes (a numbering: user id -> number): measured bytes per field times the numbered users, kept for
  good; dated hashes (counters per bucket and day): their measured bytes per day, whatever the users;
- retention: the days each kind is kept, measured from the keys' expiry (EXPIRETIME minus the end of the key's
  day), so the table follows what the writer does rather than what a setting is believed to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memory import KindFigures

SCALES = (10_000, 100_000, 1_000_000, 10_000_000)


def per_day(f: KindFigures, dataset_days: int) -> float:
    """Bytes per day of a kind: over its own days when dated, amortized over the dataset's days otherwise."""
    return f.bytes / (f.ndays or dataset_days)


def retention_of(f: KindFigures) -> int | None:
    """The most common retention (days) of the kind's keys; None when they do not expire."""
    if not f.retention:
        return None
    return f.retention.most_common(1)[0][0]


def scaled_day_bytes(f: KindFigures, dau: int, measured_dau: int, numbered_ratio: float, numbered: int) -> float:
    """Bytes per day of a dated kind at ``dau`` daily active users."""
    if f.type == "string":
        keys_per_day = f.keys / f.ndays
        overhead = (f.bytes - f.payload) / f.keys
        target_numbered = dau * numbered_ratio
        return keys_per_day * overhead + f.payload / f.ndays * target_numbered / numbered
    if f.type != "set":  # dated hashes (counters per bucket and day): a fixed size per key, whatever the users
        return f.bytes / f.ndays
    return f.bytes / f.ndays * dau / measured_dau


def scaled_once_bytes(f: KindFigures, dau: int, numbered_ratio: float) -> float:
    """Bytes of an undated kind (a numbering hash) at ``dau`` daily active users: per field times numbered."""
    return f.bytes / max(f.elements, 1) * dau * numbered_ratio


def dataset_kinds(figures: Sequence[KindFigures]) -> list[KindFigures]:
    """The kinds the dataset wrote: dated ones, and hashes (numberings); tokens and the like are left out."""
    return [f for f in figures if f.ndays or (f.type == "hash" and f.kind != "tokens")]


def sizing_rows(
    figures: Sequence[KindFigures], measured_dau: int, users: int, label: str, scales: Sequence[int] = SCALES
) -> list[list[str]]:
    """One row per scale: per-day bytes of member sets and of everything else, and totals over the retentions."""
    kinds = dataset_kinds(figures)
    numbered_hash = [f for f in kinds if f.type == "hash"]
    numbered = sum(f.elements for f in numbered_hash) or users
    ratio = numbered / measured_dau
    rows = []
    for dau in scales:
        sets_day = index_day = sets_kept = index_kept = 0.0
        for f in kinds:
            if not f.ndays:
                continue
            day_bytes = scaled_day_bytes(f, dau, measured_dau, ratio, numbered)
            kept = day_bytes * (retention_of(f) or 0)
            if f.type == "set":
                sets_day += day_bytes
                sets_kept += kept
            else:
                index_day += day_bytes
                index_kept += kept
        once = sum(scaled_once_bytes(f, dau, ratio) for f in numbered_hash)
        total = sets_kept + index_kept + once
        rows.append(
            [
                label,
                f"{dau:,}",
                f"{dau * ratio:,.0f}",
                mb(sets_day),
                mb(index_day),
                gb(sets_kept),
                gb(index_kept),
                gb(once),
                gb(total),
            ]
        )
    return rows


def retention_text(figures: Sequence[KindFigures]) -> str:
    parts = []
    for f in dataset_kinds(figures):
        days = retention_of(f)
        parts.append(f"`{f.kind}` ({f.type}) {'kept for good' if days is None else f'{days} days'}")
    return "; ".join(parts)


SIZING_HEADER = [
    "| layout | daily active | numbered users | sets MB/day | bitmaps MB/day | sets GB kept | bitmaps GB kept"
    " | numbering GB | total GB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def mb(value: float) -> str:
    return f"{value / 1e6:,.2f}"


def gb(value: float) -> str:
    return f"{value / 1e9:,.2f}"
