"""Memory benchmark: Redis bytes per key kind, per day and per stored (user, day), on the large dataset.

The dataset is written through the consumer's writer, then every key of the bench prefix is measured with
``MEMORY USAGE key SAMPLES 0`` (exact: every element counted), ``TYPE``, ``OBJECT ENCODING`` and its size
(``SCARD``, ``HLEN``, or ``STRLEN`` and ``BITCOUNT`` for bitmaps). Keys are grouped by kind: the tree's own
``KeySchema`` methods, turned into patterns by ``bench/side.py schema`` (no key name is written here), so the
same code measures any layout. ``used_memory`` before and after the write is shown too; it also counts allocator
overhead and anything other clients of the shared Redis did meanwhile. ``bench/compare.py`` measures this tree
and a baseline ref the same way, side by side.

Usage: python bench/memory.py [--quick] [--record] [--days N]
Needs REDIS_URL.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import redis
from common import LARGE, bench_settings, dataset_in_redis, emit, keys_of, require_env, stamp, today_utc
from side import kinds
from sizing import is_numbering, numbered_users, per_day

BATCH = 500
SIZE_COMMAND = {"set": "SCARD", "hash": "HLEN", "zset": "ZCARD", "list": "LLEN", "string": "STRLEN"}


@dataclass
class KindFigures:
    """What the keys of one kind (a KeySchema method) and one Redis type hold."""

    kind: str
    type: str
    bucketed: bool = False  # one key per user bucket (the KeySchema method takes a bucket)
    keys: int = 0
    elements: int = 0  # set members, hash fields, or bits set in bitmaps
    bytes: int = 0  # MEMORY USAGE
    payload: int = 0  # STRLEN of strings (the bitmap bytes themselves)
    encodings: Counter[str] = field(default_factory=Counter)
    days: set[str] = field(default_factory=set)
    retention: Counter[int] = field(default_factory=Counter)  # days kept after the key's day ends -> keys

    @property
    def ndays(self) -> int:
        return len(self.days)

    def encoding_text(self) -> str:
        return ", ".join(f"{name} x{count:,}" for name, count in self.encodings.most_common())


def day_end_s(day: str) -> int:
    """Epoch seconds at the end of a UTC day (the benchmarks store UTC days)."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return int(start.timestamp()) + 86_400


def classify(key: str, patterns: Sequence[tuple[str, re.Pattern[str]]]) -> tuple[str, str | None]:
    for name, pattern in patterns:
        match = pattern.fullmatch(key)
        if match:
            return name, match.groupdict().get("date")
    return "other", None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def measure_kinds(client: redis.Redis, prefix: str, schema_kinds: Sequence[dict[str, Any]]) -> list[KindFigures]:
    """Every key under ``prefix``, measured and grouped by (kind, type); kinds as ``bench/side.py schema`` gives."""
    patterns = [(kind["name"], re.compile(kind["regex"])) for kind in schema_kinds]
    bucketed = {kind["name"] for kind in schema_kinds if kind.get("bucketed")}
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    keys = [_text(k) for k in client.scan_iter(match=escaped + "*", count=1000)]
    found: dict[tuple[str, str], KindFigures] = {}
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.type(key)
            pipe.memory_usage(key, samples=0)
            pipe.object("encoding", key)
            pipe.execute_command("EXPIRETIME", key)
        first = pipe.execute()
        types = [_text(first[i]) for i in range(0, len(first), 4)]
        pipe = client.pipeline(transaction=False)
        for key, kind in zip(chunk, types, strict=True):
            pipe.execute_command(SIZE_COMMAND.get(kind, "EXISTS"), key)
            if kind == "string":
                pipe.bitcount(key)
        sizes = iter(pipe.execute())
        for i, (key, kind) in enumerate(zip(chunk, types, strict=True)):
            name, day = classify(key, patterns)
            figures = found.setdefault((name, kind), KindFigures(name, kind, name in bucketed))
            size = int(next(sizes))
            figures.keys += 1
            figures.bytes += int(first[4 * i + 1] or 0)
            figures.encodings[_text(first[4 * i + 2])] += 1
            if kind == "string":
                figures.payload += size
                figures.elements += int(next(sizes))
            else:
                figures.elements += size
            if day is not None:
                figures.days.add(day)
                expire_at = int(first[4 * i + 3])
                if expire_at > 0:
                    figures.retention[round((expire_at - day_end_s(day)) / 86_400)] += 1
    return sorted(found.values(), key=lambda f: (-f.bytes, f.kind))


def layout_rows(figures: Sequence[KindFigures], dataset_days: int, label: str = "") -> list[str]:
    """Table rows (one per kind and type) for :func:`layout_header`; ``label`` fills a leading column if given."""
    rows = []
    for f in figures:
        per_element = f"{f.bytes / f.elements:,.2f}" if f.elements else "-"
        cells = [label] if label else []
        cells += [
            f"`{f.kind}`",
            f"{f.type.upper()}, {f.encoding_text()}",
            f"{f.keys:,}",
            f"{f.ndays or '-'}",
            f"{f.elements:,}",
            per_element,
            f"{f.bytes:,}",
            f"{per_day(f, dataset_days):,.0f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def layout_header(with_label: bool) -> list[str]:
    lead = "| side " if with_label else ""
    return [
        lead + "| kind (KeySchema method) | type, encoding | keys | days | elements | bytes per element | bytes"
        " | bytes per day |",
        ("|---" if with_label else "") + "|---|---|---:|---:|---:|---:|---:|---:|",
    ]


def numbering_lines(figures: Sequence[KindFigures], label: str = "") -> list[str]:
    """Bytes per user ever seen (numbered) of each numbering kind (the ids hash, the names list: one key per user
    bucket, kept for good), and each list's bytes beside the hash's."""
    numbering = [f for f in figures if is_numbering(f)]
    if not numbering:
        return []
    numbered = numbered_users(figures, 0)
    hashes = [f for f in numbering if f.type == "hash"]
    parts = []
    for f in numbering:
        part = f"`{f.kind}` ({f.type.upper()}, {f.encoding_text()}) **{f.bytes / numbered:,.2f}**"
        if f.type != "hash" and hashes:
            part += f" ({f.bytes / hashes[0].bytes:.2f}x the `{hashes[0].kind}` hash)"
        parts.append(part)
    lead = f"{label}: " if label else ""
    return [f"- {lead}Redis bytes per user ever seen ({numbered:,} numbered, kept for good): {'; '.join(parts)}"]


LAYOUT_NOTE = (
    "Elements: set members, hash fields, bits set (bitmaps). Bytes: `MEMORY USAGE key SAMPLES 0` summed. Bytes per"
    " day: a dated kind's bytes over its days; an undated kind (e.g. a numbering hash, kept for good) amortized"
    " over the dataset's days."
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--days", type=int, default=LARGE.days, help=f"days of the large dataset (default {LARGE.days})"
    )
    parser.add_argument("--quick", action="store_true", help="30 days (the per-day and per-member figures hold)")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    require_env()
    data = replace(LARGE, days=30 if args.quick else args.days)
    settings = bench_settings("memory")
    client = redis.Redis.from_url(settings.redis_url)
    version = client.info("server")["redis_version"]
    before = int(client.info("memory")["used_memory"])
    with dataset_in_redis(settings, data, today_utc()) as pairs:
        after = int(client.info("memory")["used_memory"])
        figures = measure_kinds(client, settings.redis_key_prefix, kinds(keys_of(settings)))
    client.close()
    total = sum(per_day(f, data.days) for f in figures)
    lines = [
        f"### Redis memory ({data.describe()})",
        "",
        stamp("bench/memory.py"),
        f"redis-server {version}, default encodings; ids are 17-character Rocket.Chat-style ids; each active"
        " user is active in one hour of its day.",
        "",
        *layout_header(False),
        *layout_rows(figures, data.days),
        "",
        LAYOUT_NOTE,
        "",
        f"- Redis bytes per stored (user, day), every kind: **{total * data.days / max(pairs, 1):.1f}**",
        *numbering_lines(figures),
        f"- Redis bytes per day at {data.dau:,} daily active: **{total / 1e6:,.2f} MB**;"
        f" used_memory grew by {(after - before) / 1e6:,.1f} MB for {data.days} days"
        f" ({(after - before) / max(data.days, 1) / 1e6:,.1f} MB per day, allocator overhead included)",
        "",
    ]
    emit(lines, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
