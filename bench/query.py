"""Query latency benchmark: one warm client, the service beside a naive implementation, over HTTP.

Both servers are separate aiohttp processes on loopback reading the same seeded dataset (written through the
consumer's writer); the client sends requests one after the other on one keep-alive connection, ours and the
naive one alternating row by row, and times each from sending to having read the whole body. Before timing, the
parsed bodies of the two servers are asserted equal once per row. The naive server is ``bench/servers.py naive``.

Rows: active-users for 1, 7, 30 and 90 days and summary for 30 and 90 days (ranges ending today), on the standard
dataset; then, unless ``--no-large``, the summary rows on the large dataset (the service only: the naive summary
unions 30 day sets of 100k users per day and takes minutes per request there).

Usage: python bench/query.py [--quick] [--record] [--no-large] [--iterations N]
Needs REDIS_URL (``dev/stack up`` then ``set -a; . .stack/env; set +a``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from common import (
    ACTIVE_USERS_PATH,
    LARGE,
    STANDARD,
    SUMMARY_PATH,
    Dataset,
    HttpClient,
    api_server,
    auth_headers,
    aux_server,
    bench_settings,
    dataset_in_redis,
    emit,
    ms,
    percentile,
    range_query,
    require_env,
    stamp,
    target_line,
    today_utc,
)

ROWS = (
    ("active-users", ACTIVE_USERS_PATH, 1),
    ("active-users", ACTIVE_USERS_PATH, 7),
    ("active-users", ACTIVE_USERS_PATH, 30),
    ("active-users", ACTIVE_USERS_PATH, 90),
    ("summary", SUMMARY_PATH, 30),
    ("summary", SUMMARY_PATH, 90),
)
LARGE_ROWS = tuple(row for row in ROWS if row[0] == "summary")
WARMUP = 3
P99_TARGET_S = 0.150
RATIO_TARGET = 3.0


@dataclass(frozen=True)
class Timing:
    p50: float
    p99: float
    size: int
    count: int


def measure(client: HttpClient, path: str, iterations: int, warmup: int) -> Timing:
    times = []
    size = 0
    for i in range(warmup + iterations):
        status, body, seconds = client.get(path)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {body[:200]!r}")
        size = len(body)
        if i >= warmup:
            times.append(seconds)
    return Timing(percentile(times, 50), percentile(times, 99), size, len(times))


def iterations_for(days: int, base: int) -> tuple[int, int]:
    """Timed requests and warm-up requests of a row: long ranges cost up to seconds per request, so fewer."""
    return (max(3, base // 4), 1) if days >= 30 else (base, WARMUP)


def run_dataset(data: Dataset, rows: Sequence[tuple[str, str, int]], naive: bool, base: int, logs: Path) -> list:
    settings = bench_settings(f"query-{data.name}")
    today = today_utc()
    results = []
    with dataset_in_redis(settings, data, today):
        headers = auth_headers(settings)
        with api_server(settings, logs, f"api-{data.name}") as ours_server:
            ours = HttpClient(ours_server.host, ours_server.port, headers)
            other = None
            naive_server = aux_server("naive", settings, logs) if naive else None
            try:
                if naive_server is not None:
                    other = HttpClient(naive_server.host, naive_server.port)
                for name, path, days in rows:
                    url = f"{path}?{range_query(today, days)}"
                    sys.stderr.write(f"{data.name}: {name} {days} days...\n")
                    mine = measure(ours, url, *iterations_for(days, base))
                    theirs = None
                    if other is not None:
                        first, second = ours.get(url)[1], other.get(url)[1]
                        if orjson.loads(first) != orjson.loads(second):
                            raise AssertionError(f"{name} {days} days: the naive body differs from the service's")
                        theirs = measure(other, url, *iterations_for(days, base))
                    results.append((data, name, days, mine, theirs))
            finally:
                ours.close()
                if other is not None:
                    other.close()
                if naive_server is not None:
                    naive_server.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200, help="timed requests per short row (default 200)")
    parser.add_argument(
        "--quick", action="store_true", help="40 timed requests per short row, 10 per 30+ day row, 3 per large row"
    )
    parser.add_argument("--no-large", action="store_true", help="skip the large dataset's summary rows")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    require_env()
    base = 40 if args.quick else args.iterations
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        results = run_dataset(STANDARD, ROWS, True, base, Path(tmp))
        if not args.no_large:
            results += run_dataset(LARGE, LARGE_ROWS, False, base // 4, Path(tmp))
    lines = [
        "### Query latency (one warm client, sequential requests over one keep-alive connection, loopback)",
        "",
        stamp("bench/query.py"),
        f"Standard dataset: {STANDARD.describe()}. Large: {LARGE.describe()}. Ranges end today (UTC).",
        "",
        "| dataset | query | days | requests | p50 ms | p99 ms | bytes | naive p50 ms | naive p99 ms | p50 speed-up |"
        " p99 speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst_ratio = None
    for data, name, days, mine, theirs in results:
        naive_cells = ["-", "-", "-", "-"]
        if theirs is not None:
            ratios = (theirs.p50 / mine.p50, theirs.p99 / mine.p99)
            naive_cells = [ms(theirs.p50), ms(theirs.p99), f"{ratios[0]:.1f}x", f"{ratios[1]:.1f}x"]
            worst_ratio = min(ratios[0], worst_ratio) if worst_ratio is not None else ratios[0]
        cells = [data.name, name, str(days), str(mine.count), ms(mine.p50), ms(mine.p99), f"{mine.size:,}"]
        lines.append("| " + " | ".join(cells + naive_cells) + " |")
    month = next(r[3] for r in results if r[0] is STANDARD and r[1] == "active-users" and r[2] == 30)
    lines += [
        "",
        "Naive: `bench/servers.py naive` (one SMEMBERS per day in sequence, decode_responses, sorted, json.dumps;"
        " no auth or validation). Bodies asserted equal (parsed) once per row. Client: http.client in the bench"
        " process; each server is its own process.",
        "",
        target_line(
            "active-users 30 days at 10k DAU, p99", f"{ms(month.p99)} ms", "under 150 ms", month.p99 < P99_TARGET_S
        ),
    ]
    if worst_ratio is not None:
        lines.append(
            target_line(
                "lowest p50 speed-up over the naive baseline",
                f"{worst_ratio:.1f}x",
                "at least 3x on every row",
                worst_ratio >= RATIO_TARGET,
            )
        )
    lines.append("")
    emit(lines, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
