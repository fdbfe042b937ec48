"""API throughput benchmark: ``wrk`` against the active-users endpoint beside a trivial aiohttp JSON handler.

Both servers are one aiohttp process each on loopback, started in the same run (``active-users serve`` on the
standard dataset, and ``bench/servers.py trivial``); wrk runs one thread with a fixed number of keep-alive
connections against each in turn. Rows: the service with a 1-day range of the dataset (today: 10k user ids, about
200 kB per answer), the service with a 1-day range holding no data (the per-request cost of auth, validation and
one Redis read, without the payload), and the trivial handler.

Usage: python bench/throughput.py [--quick] [--record] [--duration 30] [--connections 16]
Needs REDIS_URL and ``wrk`` (Debian package; bench/run installs it).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from common import (
    ACTIVE_USERS_PATH,
    STANDARD,
    Server,
    api_server,
    auth_headers,
    aux_server,
    bench_settings,
    dataset_in_redis,
    emit,
    range_query,
    require_env,
    stamp,
    today_utc,
)
from figures import target_line

SHARE_TARGET = 0.5
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk(server: Server, path: str, headers: dict[str, str], duration: int, connections: int) -> dict[str, float]:
    """One wrk run (one thread, keep-alive connections): req/s, p50 and p99 (seconds), requests, and the errors:
    socket errors (connect, read, write, timeout), non-2xx answers, and both summed (``errors``)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*argv, f"http://{server.host}:{server.port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rate and p50 and p99 and total):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    refused = int(non_2xx.group(1)) if non_2xx else 0
    return {
        "rate": float(rate.group(1)),
        "p50": float(p50.group(1)) * _UNITS[p50.group(2)],
        "p99": float(p99.group(1)) * _UNITS[p99.group(2)],
        "requests": float(total.group(1)),
        "socket_errors": float(socket_errors),
        "non_2xx": float(refused),
        "errors": float(socket_errors + refused),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=30, help="seconds per wrk run (default 30)")
    parser.add_argument("--connections", type=int, default=16, help="wrk keep-alive connections (default 16)")
    parser.add_argument("--quick", action="store_true", help="5 s per wrk run")
    parser.add_argument(
        "--record", action="store_true", help="append the table to the benchmark history (docs/benchmarks/)"
    )
    args = parser.parse_args()
    require_env()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (bench/run does it when run as root)")
    duration = 5 if args.quick else args.duration
    emit(report(measure(duration, args.connections), duration, args.connections), args.record)
    return 0


def measure(duration: int, connections: int) -> list[tuple[str, dict[str, float]]]:
    """wrk against active-users (a day of the dataset, a day without data) and the trivial handler, in that order."""
    settings = bench_settings("throughput")
    today = today_utc()
    empty_day = today - timedelta(days=STANDARD.days + 5)  # inside retention, before the dataset: no users
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp, dataset_in_redis(settings, STANDARD, today):
        headers = auth_headers(settings)
        with api_server(settings, Path(tmp)) as ours, aux_server("trivial", settings, Path(tmp)) as trivial:
            cases = [
                (
                    "active-users, 1 day (today: 10k users)",
                    ours,
                    f"{ACTIVE_USERS_PATH}?{range_query(today, 1)}",
                    headers,
                ),
                ("active-users, 1 day without data", ours, f"{ACTIVE_USERS_PATH}?{range_query(empty_day, 1)}", headers),
                ("trivial aiohttp JSON handler", trivial, "/", {}),
            ]
            for name, server, path, sent in cases:
                sys.stderr.write(f"wrk {duration} s: {name}...\n")
                rows.append((name, wrk(server, path, sent, duration, connections)))
    return rows


def report(rows: list[tuple[str, dict[str, float]]], duration: int, connections: int) -> list[str]:
    """The section: the table and each active-users row's share of the trivial handler's rate."""
    base = rows[-1][1]["rate"]
    lines = [
        f"### API throughput (wrk, 1 thread, {connections} connections, {duration} s each, loopback)",
        "",
        stamp("bench/throughput.py"),
        f"Dataset: {STANDARD.describe()}. Each server is one aiohttp process; wrk runs beside it.",
        "",
        "| target | req/s | share of trivial | p99 ms | requests | errors |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {name} | {r['rate']:,.0f} | {r['rate'] / base:.0%} | {r['p99'] * 1000:,.1f} | {r['requests']:,.0f} |"
            f" {r['errors']:,.0f} |"
            for name, r in rows
        ],
        "",
        "Errors: wrk socket errors (connect, read, write, timeout) plus non-2xx answers.",
        "",
    ]
    for name, r in rows[:2]:
        share = r["rate"] / base
        lines.append(
            target_line(
                f"{name}: share of the trivial handler's req/s, errors",
                f"{share:.0%}, {r['errors']:,.0f} errors",
                "at least 50%, zero errors",
                share >= SHARE_TARGET and r["errors"] == 0,
                f"{base:,.0f} req/s",
                f"{share:.2f}",
            )
        )
    lines.append("")
    return lines


if __name__ == "__main__":
    sys.exit(main())
