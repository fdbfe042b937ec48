#!/usr/bin/env python3
"""Erasure at the large dataset over 400 days (day and new-user bitmaps of 400 days, hour bitmaps of the last
90: HOUR_RETENTION_DAYS): forgetting one user, then 1,000 users (``activeusers.erasure``, as
``active-users forget`` runs it), with Redis' SLOWLOG checked for any command over 5 ms meanwhile; and the
writer's time for a day's batch in buckets with forgotten users (the tombstone check) against the same batch before.

Usage: python bench/forget.py [--quick] [--record]
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace

import redis
from common import bench_settings, dataset_in_redis, emit, require_env, stamp, today_utc
from dataset import LARGE, STANDARD, activity, user_ids
from figures import target_line

from activeusers.erasure import forget_blocking
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter

SLOW_US = 5000
RETENTION_DAYS = 400


def _day_batch(data: object, last_day: object) -> UserSets:
    sets = UserSets()
    for day in activity(data, last_day):  # type: ignore[arg-type]
        if day.day == last_day:
            for user, hour in day.active:
                sets.add_active(day.day, hour, user, 1)
    return sets


def _slow(client: redis.Redis, since_s: float, prefix: str) -> list[tuple[float, str]]:
    found = []
    for entry in client.slowlog_get(128):
        raw = entry["command"]
        command = b" ".join(raw) if isinstance(raw, list) else raw
        if entry["start_time"] >= since_s and entry["duration"] > SLOW_US and prefix.encode() in command:
            found.append((entry["duration"] / 1000, str(command)[:80]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the standard dataset over 30 days")
    parser.add_argument("--days", type=int, default=RETENTION_DAYS, help="days written (default 400: the retention)")
    parser.add_argument("--record", action="store_true", help="append the section to BENCHMARKS.md")
    args = parser.parse_args()
    require_env()
    data = replace(STANDARD, days=30) if args.quick else replace(LARGE, days=args.days)
    settings = bench_settings("forget", RETENTION_DAYS=str(RETENTION_DAYS), HOUR_RETENTION_DAYS="90")
    client = redis.Redis.from_url(settings.redis_url)
    threshold = int(client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"])
    last_day = today_utc()
    ids = user_ids(data.users, data.seed)
    chosen = random.Random(25).sample(ids, 1001)
    with dataset_in_redis(settings, data, last_day):
        batch = _day_batch(data, last_day)
        started = time.perf_counter()
        ActivityWriter.of(client, settings).write(batch)
        before_s = time.perf_counter() - started
        client.config_set("slowlog-log-slower-than", min(threshold, SLOW_US))
        try:
            since = time.time() - 1
            started = time.perf_counter()
            forget_blocking(client, settings, chosen[:1])
            one_s = time.perf_counter() - started
            started = time.perf_counter()
            many = forget_blocking(client, settings, chosen[1:])
            many_s = time.perf_counter() - started
            slow = _slow(client, since, settings.redis_key_prefix)
        finally:
            client.config_set("slowlog-log-slower-than", threshold)
        started = time.perf_counter()
        ActivityWriter.of(client, settings).write(batch)
        after_s = time.perf_counter() - started
    client.close()
    lines = [
        f"### Erasure ({data.describe()}, RETENTION_DAYS 400, HOUR_RETENTION_DAYS 90)",
        "",
        stamp("bench/forget.py"),
        "",
        target_line("forget one user", f"{one_s:.2f} s", "< 1 s", one_s < 1),
        target_line("forget 1,000 users", f"{many_s:.1f} s ({len(many.days)} days touched)", "< 60 s", many_s < 60),
        target_line("Redis commands over 5 ms meanwhile", str(len(slow)), "0", not slow),
        *(f"  - {ms:.1f} ms: {command}" for ms, command in slow),
        f"- a day's batch ({sum(map(len, batch.days.values())):,} users) written by a new writer: {before_s:.2f} s"
        f" before, {after_s:.2f} s with 1,001 forgotten users' tombstones in every bucket"
        f" ({before_s / max(after_s, 1e-9):.0%} of the speed)",
        "",
    ]
    emit(lines, args.record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
