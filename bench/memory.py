"""Memory benchmark: Redis bytes per key kind, per day and per stored (user, day), on the large dataset.

The dataset is written through the consumer's writer, then every key of the bench prefix is measured with
``MEMORY USAGE key SAMPLES 0`` (exact: every element counted), ``TYPE``, ``OBJECT ENCODING`` and its size
(``SCARD``, ``HLEN``, or ``STRLEN`` and ``BITCOUNT`` for bitmaps). Keys are grouped by kind: the tree's own
``KeySchema`` methods, turned into patterns by ``bench/treescript.py schema`` (no key name is written here), so the
same code measures any layout. ``used_memory`` before and after the write is shown too; it also counts allocator
overhead and anything other clients of the shared Redis did meanwhile. ``bench/compare.py`` measures this tree
and a baseline ref the same way, side by side.

Usage: python bench/memory.py [--quick] [--record] [--days N]
Needs REDIS_URL.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

import redis
from common import LARGE, bench_settings, dataset_in_redis, emit, keys_of, require_env, stamp, today_utc
from figures import figure_line
from keykinds import KindFigures, measure_kinds
from sizing import is_numbering, numbered_users, per_day
from treescript import kinds


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
    parser.add_argument(
        "--record", action="store_true", help="append the table to the benchmark history (docs/benchmarks/)"
    )
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
        figure_line("Redis bytes per stored (user, day), every kind", f"{total * data.days / max(pairs, 1):.1f}"),
        *numbering_lines(figures),
        figure_line(
            f"Redis bytes per day at {data.dau:,} daily active",
            f"{total / 1e6:,.2f} MB",
            f"; used_memory grew by {(after - before) / 1e6:,.1f} MB for {data.days} days"
            f" ({(after - before) / max(data.days, 1) / 1e6:,.1f} MB per day, allocator overhead included)",
        ),
        "",
    ]
    emit(lines, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
