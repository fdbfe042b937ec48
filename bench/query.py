"""Query latency benchmark: one warm client, the service beside a naive implementation, over HTTP.

Both servers are separate aiohttp processes on loopback reading the same seeded dataset (written through the
consumer's writer); the client sends requests one after the other on one keep-alive connection, ours and the
naive one alternating row by row, and times each from sending to having read the whole body. Before timing, the
parsed bodies of the two servers are asserted equal once per row. The naive server is ``bench/servers.py naive``.

Rows: active-users for 1, 7, 30 and 90 days and summary for 30 and 90 days (ranges ending today), on the standard
dataset; then, unless ``--no-large``, the summary rows on the large dataset (the service only: the naive summary
unions 30 day sets of 100k users per day and takes minutes per request there). Then the Users tab's other four
endpoints (new-users and users-by-time-of-the-day-in-a-week for 7, 30 and 90 days, chat-busier hourly and weekly
data for today), each cold (the first request after a server start, once per start) and warm, beside the naive
server; ``--users-only`` runs just those.

Usage: python bench/query.py [--quick] [--record] [--no-large] [--users-only] [--cold-samples N] [--iterations N]
Needs REDIS_URL (``dev/stack up`` then ``set -a; . .stack/env; set +a``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
from common import (
    ACTIVE_USERS_PATH,
    BY_TIME_OF_DAY_PATH,
    HOURLY_PATH,
    LARGE,
    NEW_USERS_PATH,
    STANDARD,
    SUMMARY_PATH,
    WEEKLY_PATH,
    Dataset,
    HttpClient,
    Server,
    api_server,
    auth_headers,
    aux_server,
    bench_settings,
    dataset_in_redis,
    emit,
    first_answer,
    ms,
    percentile,
    range_query,
    require_env,
    stamp,
    start_query,
    today_utc,
)
from figures import target_line

ROWS = (
    ("active-users", ACTIVE_USERS_PATH, 1),
    ("active-users", ACTIVE_USERS_PATH, 7),
    ("active-users", ACTIVE_USERS_PATH, 30),
    ("active-users", ACTIVE_USERS_PATH, 90),
    ("summary", SUMMARY_PATH, 30),
    ("summary", SUMMARY_PATH, 90),
)
LARGE_ROWS = tuple(row for row in ROWS if row[0] == "summary")
# The Users tab's other four endpoints, for the ranges Rocket.Chat's client asks; days 0 = chat-busier's start-only
# query at the end of today (hourly-data: today's 24 hours; weekly-data: today and the 7 days before).
USERS_ROWS = (
    ("new-users", NEW_USERS_PATH, 7),
    ("new-users", NEW_USERS_PATH, 30),
    ("new-users", NEW_USERS_PATH, 90),
    ("users-by-time-of-day", BY_TIME_OF_DAY_PATH, 7),
    ("users-by-time-of-day", BY_TIME_OF_DAY_PATH, 30),
    ("users-by-time-of-day", BY_TIME_OF_DAY_PATH, 90),
    ("hourly-data", HOURLY_PATH, 0),
    ("weekly-data", WEEKLY_PATH, 0),
)
WARMUP = 3
P99_TARGET_S = 0.150
RATIO_TARGET = 3.0
USERS_P99_TARGET_S = 0.025
USERS_RATIO_TARGET = 5.0


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


Result = tuple[Dataset, str, int, Timing, Timing | None]


def run_dataset(
    data: Dataset, rows: Sequence[tuple[str, str, int]], naive: bool, base: int, logs: Path
) -> list[Result]:
    settings = bench_settings(f"query-{data.name}")
    today = today_utc()
    results: list[Result] = []
    with dataset_in_redis(settings, data, today, naive_sets=naive):
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


def row_url(path: str, today: date, days: int) -> str:
    return f"{path}?{start_query(today) if days == 0 else range_query(today, days)}"


def cold(start: Callable[[], Server], url: str, headers: dict[str, str] | None, samples: int) -> Timing:
    """The first request after a server (re)start, once per sample: a new process, pool and cache each time."""
    times = []
    size = 0
    for _ in range(samples):
        with start() as server:
            body, seconds = first_answer(server, url, headers)
        size = len(body)
        times.append(seconds)
    return Timing(percentile(times, 50), percentile(times, 99), size, len(times))


@dataclass(frozen=True)
class UsersRow:
    name: str
    days: int
    cold: Timing
    warm: Timing
    naive_cold: Timing
    naive_warm: Timing


def run_users_tab(base: int, cold_samples: int, logs: Path) -> list[UsersRow]:
    """The Users-tab rows on the standard dataset: cold and warm, the service beside the naive server."""
    settings = bench_settings("query-users")
    today = today_utc()
    rows = []
    with dataset_in_redis(settings, STANDARD, today, naive_sets=True):
        headers = auth_headers(settings)
        with api_server(settings, logs, "api-users") as ours_server, aux_server("naive", settings, logs) as naive:
            ours = HttpClient(ours_server.host, ours_server.port, headers)
            other = HttpClient(naive.host, naive.port)
            try:
                for name, path, days in USERS_ROWS:
                    url = row_url(path, today, days)
                    sys.stderr.write(f"users tab: {name} {days or 'today'}...\n")
                    if orjson.loads(ours.get(url)[1]) != orjson.loads(other.get(url)[1]):
                        raise AssertionError(f"{name} {days} days: the naive body differs from the service's")
                    count, warmup = iterations_for(days, base)
                    warm, naive_warm = measure(ours, url, count, warmup), measure(other, url, count, warmup)
                    ours_cold = cold(lambda: api_server(settings, logs, "api-cold"), url, headers, cold_samples)
                    naive_cold = cold(lambda: aux_server("naive", settings, logs), url, None, cold_samples)
                    rows.append(UsersRow(name, days, ours_cold, warm, naive_cold, naive_warm))
            finally:
                ours.close()
                other.close()
    return rows


def users_tab_lines(rows: Sequence[UsersRow]) -> list[str]:
    lines = [
        "### Users tab: new-users, users-by-time-of-the-day-in-a-week, chat-busier hourly and weekly data",
        "",
        stamp("bench/query.py"),
        f"Standard dataset: {STANDARD.describe()}; each active user in one random hour of its day, 1 in 50 also"
        " created that day. Ranges end today (UTC); hourly and weekly: start at 23:59:59.999 today. Cold: the first"
        " request after a server start (new process, pool and cache), once per start.",
        "",
        "| query | days | cold p50 ms | cold p99 ms | warm p50 ms | warm p99 ms | naive cold p50 | naive cold p99"
        " | naive warm p50 | naive warm p99 | speed-up cold p50/p99 | speed-up warm p50/p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst_p99 = 0.0
    worst_ratio = float("inf")
    for r in rows:
        ratios = [r.naive_cold.p50 / r.cold.p50, r.naive_cold.p99 / r.cold.p99]
        ratios += [r.naive_warm.p50 / r.warm.p50, r.naive_warm.p99 / r.warm.p99]
        worst_p99 = max(worst_p99, r.cold.p99, r.warm.p99)
        worst_ratio = min(worst_ratio, *ratios)
        cells = [r.name, str(r.days) if r.days else "today"]
        cells += [ms(t) for t in (r.cold.p50, r.cold.p99, r.warm.p50, r.warm.p99)]
        cells += [ms(t) for t in (r.naive_cold.p50, r.naive_cold.p99, r.naive_warm.p50, r.naive_warm.p99)]
        cells += [f"{ratios[0]:.1f}x / {ratios[1]:.1f}x", f"{ratios[2]:.1f}x / {ratios[3]:.1f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    samples = rows[0].cold.count if rows else 0
    warm_counts = sorted({r.warm.count for r in rows})
    lines += [
        "",
        f"Cold rows: {samples} server starts per row and server; warm rows: {warm_counts} timed requests after"
        " warm-up. Naive: `bench/servers.py naive` (every new-user, hour or day set read with SMEMBERS in sequence"
        " and counted in Python, slots as Python set unions). Bodies asserted equal (parsed) once per row.",
        "",
        target_line(
            "Users tab, slowest p99 of any row, cold or warm",
            f"{ms(worst_p99)} ms",
            "under 25 ms",
            worst_p99 < USERS_P99_TARGET_S,
        ),
        target_line(
            "Users tab, lowest speed-up over the naive baseline (p50 and p99, cold and warm)",
            f"{worst_ratio:.1f}x",
            "at least 5x on every row",
            worst_ratio >= USERS_RATIO_TARGET,
        ),
        "",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200, help="timed requests per short row (default 200)")
    parser.add_argument(
        "--quick", action="store_true", help="40 timed requests per short row, 10 per 30+ day row, 3 per large row"
    )
    parser.add_argument("--no-large", action="store_true", help="skip the large dataset's summary rows")
    parser.add_argument(
        "--record", action="store_true", help="append the table to the benchmark history (docs/benchmarks/)"
    )
    parser.add_argument("--users-only", action="store_true", help="only the Users-tab rows (new-users, by hour, ...)")
    parser.add_argument(
        "--cold-samples", type=int, default=None, help="server starts per cold row (default 10, 3 with --quick)"
    )
    args = parser.parse_args()
    require_env()
    base = 40 if args.quick else args.iterations
    samples = args.cold_samples or (3 if args.quick else 10)
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        users = run_users_tab(base, samples, Path(tmp))
        if args.users_only:
            emit(users_tab_lines(users), args.record)
            return 0
        results = run_dataset(STANDARD, ROWS, True, base, Path(tmp))
        if not args.no_large:
            results += run_dataset(LARGE, LARGE_ROWS, False, base // 4, Path(tmp))
    emit(latency_lines(results) + users_tab_lines(users), args.record)
    return 0


def latency_lines(results: list[Result]) -> list[str]:
    """The section of the standard and large datasets' rows: the table beside the naive server, the targets."""
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
    _, _, _, month, naive_month = next(r for r in results if r[0] is STANDARD and r[1] == "active-users" and r[2] == 30)
    versus = (
        {"baseline": f"{ms(naive_month.p99)} ms", "ratio": f"{month.p99 / naive_month.p99:.3f}"} if naive_month else {}
    )
    lines += [
        "",
        "Naive: `bench/servers.py naive` (one SMEMBERS per day in sequence, decode_responses, sorted, json.dumps;"
        " no auth or validation). Bodies asserted equal (parsed) once per row. Client: http.client in the bench"
        " process; each server is its own process.",
        "",
        target_line(
            "active-users 30 days at 10k DAU, p99",
            f"{ms(month.p99)} ms",
            "under 150 ms",
            month.p99 < P99_TARGET_S,
            **versus,
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
    return lines


if __name__ == "__main__":
    sys.exit(main())
