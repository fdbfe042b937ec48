"""Retention and stickiness latency: the service beside PostgreSQL, on the same data, in one run.

The dataset (large: 500,000 users, 100,000 daily active, 90 days; ``--quick``: the standard one) is written
through the consumer's writer, first-day tracking included, and loaded into a private PostgreSQL server
(``bench/postgres.py``) as a ``(day, user_id)`` table with a primary key. Two questions: weekly first-active
retention of the 12 ISO weeks ending this week (12 cohorts, up to 12 periods after each) and stickiness of the
last 30 days. The service is timed cold (the first request after an API process start, once per start) and warm
(sequential requests on one keep-alive connection); PostgreSQL runs the same question in SQL, timed after one
untimed run. The answers are asserted equal before timing.

Usage: python bench/retention.py [--quick] [--record] [--cold-samples N] [--iterations N]
Needs REDIS_URL (``dev/stack up`` then ``set -a; . .stack/env; set +a``) and Debian's ``postgresql`` package.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import orjson
import postgres
import psycopg
from common import (
    HttpClient,
    api_server,
    auth_headers,
    bench_settings,
    dataset_in_redis,
    emit,
    latency_run,
    ms,
    percentile,
    range_query,
    stamp,
    today_utc,
)
from figures import target_line
from query import Timing, cold, measure

RETENTION_PATH = "/api/v1/active-users/retention"
STICKINESS_PATH = "/api/v1/active-users/stickiness"
WEEKS = 12
STICKY_DAYS = 30
COLD_P99_TARGET_S = 0.100
WARM_P99_TARGET_S = 0.025


def questions(today: date) -> dict[str, str]:
    """The two questions' URLs: 12 ISO weeks ending this week, and the last 30 days."""
    monday = today - timedelta(days=today.weekday() + 7 * (WEEKS - 1))
    weeks = range_query(today, (today - monday).days + 1)
    return {
        "retention, weekly, 12 x 12": f"{RETENTION_PATH}?{weeks}&period=week&cohort=first&periods={WEEKS}",
        "stickiness, 30 days": f"{STICKINESS_PATH}?{range_query(today, STICKY_DAYS)}",
    }


def sql_answer(conn: psycopg.Connection, name: str, today: date) -> object:
    """The question ``name`` answered by PostgreSQL, shaped like the service's answer's counts."""
    if name.startswith("retention"):
        monday = today - timedelta(days=today.weekday() + 7 * (WEEKS - 1))
        found = postgres.retention(conn, monday, WEEKS)
        rows = []
        for week in range(WEEKS):
            start = monday + timedelta(days=7 * week)
            counts = found.get(start, {})
            rows.append([counts.get(k, 0) for k in range(WEEKS - week)])
        return rows
    counts = postgres.stickiness(conn, today - timedelta(days=STICKY_DAYS - 1), today)
    return [counts.get(k, 0) for k in range(1, STICKY_DAYS + 1)]


def api_counts(body: bytes) -> object:
    found = orjson.loads(body)
    if "cohorts" in found:
        assert all(row["returned"][0] == row["size"] for row in found["cohorts"])
        return [row["returned"] for row in found["cohorts"]]
    return found["activeDays"]


def timed_sql(conn: psycopg.Connection, name: str, today: date, runs: int) -> Timing:
    sql_answer(conn, name, today)  # untimed: PostgreSQL's buffers hold the table afterwards
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        sql_answer(conn, name, today)
        times.append(time.perf_counter() - started)
    return Timing(percentile(times, 50), percentile(times, 99), 0, len(times))


def main() -> int:
    run = latency_run(__doc__)
    data, samples, iterations = run.data, run.samples, run.iterations
    sql_runs = 3 if run.quick else 10
    today = today_utc()
    settings = bench_settings("retention")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp, postgres.postgres() as dsn:
        logs = Path(tmp)
        sys.stderr.write(f"retention: writing the {data.name} dataset to Redis and PostgreSQL...\n")
        with dataset_in_redis(settings, data, today):
            rows = postgres.load(dsn, data, today)
            headers = auth_headers(settings)
            with api_server(settings, logs, "api") as server, psycopg.connect(dsn) as conn:
                client = HttpClient(server.host, server.port, headers)
                try:
                    for name, url in questions(today).items():
                        status, body, _ = client.get(url)
                        assert status == 200, body[:200]
                        if api_counts(body) != sql_answer(conn, name, today):
                            raise AssertionError(f"{name}: PostgreSQL's answer differs from the service's")
                        warm = measure(client, url, iterations, 3)
                        first = cold(lambda: api_server(settings, logs, "api-cold"), url, headers, samples)
                        results.append((name, first, warm, timed_sql(conn, name, today, sql_runs)))
                finally:
                    client.close()
    emit(report(data.describe(), rows, results), run.record)
    return 0


def report(described: str, rows: int, results: list[tuple[str, Timing, Timing, Timing]]) -> list[str]:
    lines = [
        "### Retention and stickiness (the service beside PostgreSQL, same data, one run)",
        "",
        stamp("bench/retention.py"),
        f"Dataset: {described}; PostgreSQL: {rows:,} rows of `activity (day, user_id)` with its primary key.",
        "",
        "| question | cold p50 ms | cold p99 ms | warm p50 ms | warm p99 ms | PostgreSQL p50 ms | PostgreSQL p99 ms"
        " | PostgreSQL p50 / cold p50 | PostgreSQL p50 / warm p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, first, warm, sql in results:
        cells = [name, *(ms(t) for t in (first.p50, first.p99, warm.p50, warm.p99, sql.p50, sql.p99))]
        cells += [f"{sql.p50 / first.p50:,.0f}x", f"{sql.p50 / warm.p50:,.0f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    worst_cold = max(first.p99 for _, first, _, _ in results)
    worst_warm = max(warm.p99 for _, _, warm, _ in results)
    lines += [
        "",
        f"Cold: {results[0][1].count} API starts per row (a new process, pool and cache each); warm:"
        f" {results[0][2].count} timed requests after 3; PostgreSQL {results[0][3].count} timed runs after one"
        " (psycopg, one connection). Answers asserted equal before timing.",
        "",
        target_line(
            "retention and stickiness, slowest cold p99",
            f"{ms(worst_cold)} ms",
            "under 100 ms",
            worst_cold < COLD_P99_TARGET_S,
        ),
        target_line(
            "retention and stickiness, slowest warm p99",
            f"{ms(worst_warm)} ms",
            "under 25 ms",
            worst_warm < WARM_P99_TARGET_S,
        ),
        "",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
