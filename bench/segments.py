"""Breakdowns and segments: latency of ``breakdown`` over 30 days and of the segmented summary beside the
unsegmented one, and the memory of the per-value bitmaps, on a dataset with one indexed property of 5 values.

The dataset (large: 500,000 users, 100,000 daily active, 90 days; ``--quick``: the standard one) is written
through the consumer's writer with a platform per event: each user has one of 5 platforms (web 45%, desktop 20%,
android 18%, ios 15%, linux 2%) and 15% of users a second one that a third of their days also carry. Timed cold
(the first request after an API process start, once per start) and warm (sequential requests on one keep-alive
connection), like ``bench/retention.py``. The breakdown is asserted equal to the counts of the written sets
first. Memory: ``MEMORY USAGE`` of every per-value bitmap and counters key of the dataset's last day.

Usage: python bench/segments.py [--quick] [--record] [--cold-samples N] [--iterations N]
Needs REDIS_URL (``dev/stack up`` then ``set -a; . .stack/env; set +a``).
"""

from __future__ import annotations

import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import redis
from common import (
    HttpClient,
    api_server,
    auth_headers,
    bench_settings,
    delete_prefix,
    emit,
    keys_of,
    latency_run,
    ms,
    range_query,
    stamp,
    today_utc,
)
from dataset import Dataset, activity
from figures import figure_line, target_line
from query import Timing, cold, measure
from sizing import SCALES, gb, mb
from treescript import day_sets

from activeusers.keys import Segment
from activeusers.settings import Settings
from activeusers.writer import ActivityWriter

BREAKDOWN_PATH = "/api/v1/active-users/breakdown"
SUMMARY_PATH = "/api/v1/active-users/summary"
DAYS = 30
PLATFORMS = (("web", 45), ("desktop", 20), ("android", 18), ("ios", 15), ("linux", 2))
BREAKDOWN_COLD_TARGET_S = 0.050
BREAKDOWN_WARM_TARGET_S = 0.015
SEGMENT_RATIO_TARGET = 2.0


def platforms_of(user: str, day: date) -> list[str]:
    """The platforms of ``user``'s events on ``day``: its own, and on a third of the days of 15% of users a second."""
    draw = zlib.crc32(user.encode())
    share, first = draw % 100, 0
    while share >= PLATFORMS[first][1]:
        share -= PLATFORMS[first][1]
        first += 1
    found = [PLATFORMS[first][0]]
    if (draw >> 8) % 100 < 15 and (draw + day.toordinal()) % 3 == 0:
        found.append(PLATFORMS[(first + 1 + (draw >> 16) % 4) % len(PLATFORMS)][0])
    return found


@contextmanager
def dataset_with_platforms(settings: Settings, data: Dataset, last_day: date) -> Iterator[dict[date, Counter[str]]]:
    """The dataset written with a platform per event (deleted afterwards); yields each day's users per value."""
    client = redis.Redis.from_url(settings.redis_url)
    writer = ActivityWriter.of(client, settings)
    per_day: dict[date, Counter[str]] = {}
    try:
        for i, today in enumerate(activity(data, last_day)):
            sets = day_sets(today, settings, platforms_of)
            writer.write(sets)
            per_day[today.day] = Counter({value: len(users) for (_, _, value), users in sets.segments.items()})
            sys.stderr.write(f"\rsegments: writing the {data.name} dataset: {i + 1}/{data.days}   ")
        sys.stderr.write("\n")
        yield per_day
    finally:
        client.close()
        delete_prefix(settings.redis_url, settings.redis_key_prefix)


@dataclass(frozen=True)
class Memory:
    """One day's per-value keys: ``MEMORY USAGE`` of the bitmaps and of the counters keys, and the bitmaps' count
    and payload (``STRLEN``)."""

    bitmaps: int
    counters: int
    keys: int
    payload: int


def memory(settings: Settings, day: date) -> Memory:
    """What ``day``'s per-value bitmaps and counters keys hold (every bucket)."""
    keys = keys_of(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        ids = [int(found) for found in client.hvals(keys.values("platform"))]
        bitmaps = counters = count = payload = 0
        for bucket in range(keys.buckets):
            counters += client.memory_usage(keys.segment_counts("platform", day, bucket)) or 0
            for value_id in ids:
                key = keys.segment_bits(Segment("platform", value_id), day, bucket)
                if used := client.memory_usage(key):
                    bitmaps, count, payload = bitmaps + used, count + 1, payload + client.strlen(key)
        return Memory(bitmaps, counters, count, payload)
    finally:
        client.close()


def main() -> int:
    run = latency_run(__doc__)
    data, samples, iterations = run.data, run.samples, run.iterations
    today = today_utc()
    settings = bench_settings("segments")
    span = range_query(today, DAYS)
    urls = {
        "breakdown, 30 days": f"{BREAKDOWN_PATH}?{span}&property=platform",
        "summary, 30 days": f"{SUMMARY_PATH}?{span}",
        "summary, 30 days, segment=platform:ios": f"{SUMMARY_PATH}?{span}&segment=platform:ios",
    }
    results: dict[str, tuple[Timing, Timing]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-segments-") as tmp:
        logs = Path(tmp)
        started = time.monotonic()
        with dataset_with_platforms(settings, data, today) as per_day:
            written_s = time.monotonic() - started
            bytes_of = memory(settings, today)
            headers = auth_headers(settings)
            with api_server(settings, logs, "api") as server:
                client = HttpClient(server.host, server.port, headers)
                try:
                    status, body, _ = client.get(urls["breakdown, 30 days"])
                    assert status == 200, body[:200]
                    check(orjson.loads(body), per_day)
                    for name, url in urls.items():
                        warm = measure(client, url, iterations, 3)
                        first = cold(lambda: api_server(settings, logs, "api-cold"), url, headers, samples)
                        results[name] = (first, warm)
                finally:
                    client.close()
    values = len(per_day[today])
    emit(report(data, results, bytes_of, values, written_s), run.record)
    return 0


def check(answer: dict[str, object], per_day: dict[date, Counter[str]]) -> None:
    """The breakdown's DAU of every value and day equals the sets written."""
    for row in answer["values"]:  # type: ignore[attr-defined]
        for day in row["days"]:
            expected = per_day[date.fromisoformat(day["date"])][row["value"]]
            if day["dau"] != expected:
                raise AssertionError(f"{row['value']} {day['date']}: {day['dau']} != {expected}")


def report(
    data: Dataset, results: dict[str, tuple[Timing, Timing]], bytes_of: Memory, values: int, written_s: float
) -> list[str]:
    lines = [
        "### Breakdowns and segments (one indexed property of 5 values)",
        "",
        stamp("bench/segments.py"),
        f"Dataset: {data.describe()}, a platform per event (5 values, 15% of users on two); written in"
        f" {written_s:,.0f} s through the consumer's writer.",
        "",
        "| question | cold p50 ms | cold p99 ms | warm p50 ms | warm p99 ms | bytes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (first, warm) in results.items():
        cells = [name, *(ms(t) for t in (first.p50, first.p99, warm.p50, warm.p99)), f"{warm.size:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    breakdown_cold, breakdown_warm = results["breakdown, 30 days"]
    plain, segmented = results["summary, 30 days"], results["summary, 30 days, segment=platform:ios"]
    cold_ratio, warm_ratio = segmented[0].p50 / plain[0].p50, segmented[1].p50 / plain[1].p50
    bitmaps, counters = bytes_of.bitmaps, bytes_of.counters
    lines += [
        "",
        f"Cold: {breakdown_cold.count} API starts per row (a new process, pool and cache each); warm:"
        f" {breakdown_warm.count} timed requests after 3. The breakdown's DAU asserted equal to the written sets.",
        "",
        target_line(
            "breakdown over 30 days, cold p99",
            f"{ms(breakdown_cold.p99)} ms",
            "under 50 ms",
            breakdown_cold.p99 < BREAKDOWN_COLD_TARGET_S,
        ),
        target_line(
            "breakdown over 30 days, warm p99",
            f"{ms(breakdown_warm.p99)} ms",
            "under 15 ms",
            breakdown_warm.p99 < BREAKDOWN_WARM_TARGET_S,
        ),
        target_line(
            "segmented summary / unsegmented, 30 days (p50, cold and warm)",
            f"{cold_ratio:.2f}x cold, {warm_ratio:.2f}x warm",
            "within 2x",
            max(cold_ratio, warm_ratio) <= SEGMENT_RATIO_TARGET,
        ),
        figure_line(
            "memory per indexed value and day",
            f"{bitmaps / values:,.0f} bytes",
            f" of bitmaps ({values} values, {data.users:,} numbered users, 16 buckets:"
            f" {bitmaps / values / data.users * 8:.2f} bits per numbered user), plus {counters:,} bytes of counters"
            " keys per property and day",
        ),
        "",
        *sizing_lines(data, bytes_of, values),
    ]
    return lines


def sizing_lines(data: Dataset, found: Memory, values: int) -> list[str]:
    """The sizing table's extension: one indexed value's bytes at each scale, from the measured per-key overhead
    (``MEMORY USAGE`` minus ``STRLEN``) and bitmap bytes per numbered user (keys per day as measured: a bucket's
    bitmap exists when the value had a user in it that day), kept ``RETENTION_DAYS`` (400 days)."""
    overhead = (found.bitmaps - found.payload) / found.keys
    keys_per_value = found.keys / values
    payload_per_user = found.payload / values / data.users
    lines = [
        "Sizing, per indexed value (add to the table in docs/keys.md for each value of each indexed property):",
        "",
        "| daily active | numbered users | MB/day per value | GB kept per value | GB kept, 5 values |",
        "|---:|---:|---:|---:|---:|",
    ]
    for dau in SCALES:
        numbered = dau * data.users / data.dau
        day = keys_per_value * overhead + payload_per_user * numbered
        lines.append(f"| {dau:,} | {numbered:,.0f} | {mb(day)} | {gb(day * 400)} | {gb(day * 400 * values)} |")
    return [*lines, ""]


if __name__ == "__main__":
    sys.exit(main())
