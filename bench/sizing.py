"""Sizing: Redis memory at 10k, 100k, 1M and 10M daily active users, computed from measured per-key figures.

Pure functions over the :class:`~keykinds.KindFigures` that ``bench/keykinds.py`` measures (``bench/compare.py``
calls them for both sides and writes the table into ``docs/keys.md`` and the benchmark history). The model, per kind:

- dated sets (the day sets of ids a tree before issue 22 keeps): measured bytes per member times members per day,
  which scale with the daily active users;
- bitmaps: measured per-key overhead times keys per day, plus the measured bitmap bytes per day, which scale
  with the *numbered* users (every user ever seen, not only the day's): numbered = daily active times the
  dataset's ratio (500k users for 100k daily active: 5);
- the numbering: undated kinds with one key per user bucket whose elements are the numbered users, the ids HASH
  (user id -> number) and, since issue 22, the names LIST (number -> user id): measured bytes per element times
  the numbered users, kept for good;
- other undated kinds (the versions and derived hashes: a field per day, whatever the users): their measured
  bytes, as they are; dated hashes (counters per bucket and day): their measured bytes per day, whatever the users;
- retention: the days each kind is kept, measured from the keys' expiry (EXPIRETIME minus the end of the key's
  day), so the table follows what the writer does rather than what a setting is believed to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keykinds import KindFigures

SCALES = (10_000, 100_000, 1_000_000, 10_000_000)
# Kinds of no dataset: the API's tokens, and keys no KeySchema method names.
NOT_DATASET = ("tokens", "other")
NUMBERING_TYPES = ("hash", "list")


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
    """Bytes of a numbering kind (ids hash, names list) at ``dau`` daily active users: per element times numbered."""
    return f.bytes / max(f.elements, 1) * dau * numbered_ratio


def dataset_kinds(figures: Sequence[KindFigures]) -> list[KindFigures]:
    """The kinds the dataset wrote: dated ones, and undated hashes and lists (numberings, versions); tokens and
    keys of no kind are left out."""
    return [f for f in figures if f.kind not in NOT_DATASET and (f.ndays or f.type in NUMBERING_TYPES)]


def is_numbering(f: KindFigures) -> bool:
    """An undated kind with one key per user bucket (the ids hash, the names list): grows with every user seen."""
    return not f.ndays and f.type in NUMBERING_TYPES and f.kind not in NOT_DATASET and f.bucketed


def numbered_users(figures: Sequence[KindFigures], users: int) -> int:
    """The numbered users measured: the elements of the numbering kinds (each holds one per user), else
    ``users``."""
    return max((f.elements for f in figures if is_numbering(f)), default=0) or users


@dataclass(frozen=True)
class Size:
    """The modelled bytes of one layout at one scale."""

    dau: int
    numbered: float
    sets_day: float
    index_day: float
    sets_kept: float
    index_kept: float
    numbering: float
    fixed: float

    @property
    def total(self) -> float:
        return self.sets_kept + self.index_kept + self.numbering + self.fixed


def sizes(figures: Sequence[KindFigures], measured_dau: int, users: int, scales: Sequence[int] = SCALES) -> list[Size]:
    """The model at each scale (see the module's docstring)."""
    kinds = dataset_kinds(figures)
    numbering = [f for f in kinds if is_numbering(f)]
    fixed = sum(f.bytes for f in kinds if not f.ndays and not is_numbering(f))
    numbered = numbered_users(figures, users)
    ratio = numbered / measured_dau
    found = []
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
        once = sum(scaled_once_bytes(f, dau, ratio) for f in numbering)
        found.append(Size(dau, dau * ratio, sets_day, index_day, sets_kept, index_kept, once, fixed))
    return found


def sizing_rows(
    figures: Sequence[KindFigures], measured_dau: int, users: int, label: str, scales: Sequence[int] = SCALES
) -> list[list[str]]:
    """One row per scale: per-day bytes of sets and of the index, and totals over the retentions."""
    return [
        [
            label,
            f"{size.dau:,}",
            f"{size.numbered:,.0f}",
            mb(size.sets_day),
            mb(size.index_day),
            gb(size.sets_kept),
            gb(size.index_kept),
            gb(size.numbering),
            gb(size.total),
        ]
        for size in sizes(figures, measured_dau, users, scales)
    ]


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
