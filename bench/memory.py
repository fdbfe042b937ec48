"""Memory benchmark: Redis bytes per stored (user, day) and per day, on the large dataset.

The dataset is written through the consumer's writer (one day set and one hour set entry per active user per
day, with expiry), then every key of the bench prefix is measured with ``MEMORY USAGE key SAMPLES 0`` (exact:
every element counted) and ``OBJECT ENCODING``. ``used_memory`` before and after the write is shown too; it also
counts allocator overhead and anything other clients of the shared Redis did meanwhile.

Usage: python bench/memory.py [--quick] [--record] [--days N]
Needs REDIS_URL.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import replace

import redis
from common import LARGE, bench_settings, dataset_in_redis, emit, keys_of, require_env, stamp, today_utc


def measure(client: redis.Redis, pattern: str) -> tuple[int, int, int, Counter[str]]:
    """Keys, members, bytes and encodings of the keys matching ``pattern``."""
    keys = list(client.scan_iter(match=pattern, count=1000))
    members = used = 0
    encodings: Counter[str] = Counter()
    for start in range(0, len(keys), 100):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 100]:
            pipe.scard(key)
            pipe.memory_usage(key, samples=0)
            pipe.object("encoding", key)
        replies = pipe.execute()
        for i in range(0, len(replies), 3):
            members += int(replies[i])
            used += int(replies[i + 1] or 0)
            encodings[replies[i + 2].decode() if isinstance(replies[i + 2], bytes) else str(replies[i + 2])] += 1
    return len(keys), members, used, encodings


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
    keys = keys_of(settings)
    client = redis.Redis.from_url(settings.redis_url)
    version = client.info("server")["redis_version"]
    before = int(client.info("memory")["used_memory"])
    found: dict[str, tuple[int, int, int, Counter[str]]] = {}
    with dataset_in_redis(settings, data, today_utc()) as pairs:
        after = int(client.info("memory")["used_memory"])
        for kind in ("day", "hour"):
            found[kind] = measure(client, f"{keys.pattern()[:-1]}{kind}:*")
    client.close()
    day_keys, day_members, day_bytes, day_enc = found["day"]
    hour_keys, hour_members, hour_bytes, hour_enc = found["hour"]
    assert day_members == pairs, (day_members, pairs)
    total = day_bytes + hour_bytes

    def enc(counter: Counter[str]) -> str:
        return ", ".join(f"{name} x{count}" for name, count in counter.most_common())

    lines = [
        f"### Redis memory ({data.describe()})",
        "",
        stamp("bench/memory.py"),
        f"redis-server {version}, default set encodings; ids are 17-character Rocket.Chat-style ids; each active"
        " user is in one hour set of its day.",
        "",
        "| key (prefix `P`, zone `Z`) | type, encoding | keys | members | bytes per member | bytes per day |",
        "|---|---|---:|---:|---:|---:|",
        f"| `Pday:Z:YYYY-MM-DD` | SET, {enc(day_enc)} | {day_keys:,} | {day_members:,} |"
        f" {day_bytes / max(day_members, 1):.1f} | {day_bytes // max(day_keys, 1):,} |",
        f"| `Phour:Z:YYYY-MM-DDTHH` | SET, {enc(hour_enc)} | {hour_keys:,} | {hour_members:,} |"
        f" {hour_bytes / max(hour_members, 1):.1f} | {hour_bytes // max(data.days, 1):,} |",
        f"| all | | {day_keys + hour_keys:,} | {day_members + hour_members:,} | | {total // max(data.days, 1):,} |",
        "",
        f"- Redis bytes per stored (user, day), day and hour sets together: **{total / max(pairs, 1):.1f}**"
        f" (day set alone {day_bytes / max(pairs, 1):.1f}; MEMORY USAGE SAMPLES 0)",
        f"- Redis bytes per day at {data.dau:,} daily active: **{total / max(data.days, 1) / 1e6:,.1f} MB**;"
        f" used_memory grew by {(after - before) / 1e6:,.1f} MB for {data.days} days"
        f" ({(after - before) / max(data.days, 1) / 1e6:,.1f} MB per day, allocator overhead included)",
        "",
    ]
    emit(lines, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
