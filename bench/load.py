"""API load benchmark: ``wrk`` at 64, 256 and 1,000 keep-alive connections against one ``active-users serve``,
with the trivial aiohttp JSON handler measured in the same run as the baseline.

One API process (``active-users serve``, default settings) on the standard dataset and one trivial handler
(``bench/servers.py trivial``), each one aiohttp process on loopback; wrk (one thread, ``--timeout 10s``) runs
beside them. For each connection count, in turn: the trivial handler, active-users for today (1 day, 10k user ids,
about 200 kB an answer), the summary of the last 30 days (ending today) and an error path (an unknown token: the
documented 401). Every endpoint is asked once before it is measured (warm caches, as a running service has them).

Each row: req/s and its share of the trivial handler's at the same connection count, p50 and p99, every answer by
HTTP status (from the service's own ``activeusers_api_requests_total``, read before and after the run; wrk only
counts "non-2xx"), wrk's socket errors (connect, read, write, timeout: requests never answered) and the writes to
Redis per request (the coalesced small reads, ``activeusers_api_redis_batches_total``: a warm request reads
nothing else). The machine's load average is printed before and after: every process shares its cores.

At the first connection count (where the share targets are) the four runs are repeated in ``--rounds`` (3)
alternating rounds and the targets take the round with the median share: on a shared machine one burst of other
work then moves one round, not the figure.

``--profile``: py-spy (when on PATH, e.g. ``pip install py-spy``) then samples the API during one more summary run
at the first connection count (apart from the measured runs: the sampler takes CPU too); the functions with the
most samples of their own follow the tables.

Usage: python bench/load.py [--quick] [--record] [--duration 30] [--connections 64 256 1000] [--rounds 3] [--profile]
Needs REDIS_URL and ``wrk`` (Debian package; bench/run installs it).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import (
    ACTIVE_USERS_PATH,
    BENCH_USER,
    STANDARD,
    SUMMARY_PATH,
    HttpClient,
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
from throughput import wrk

CONNECTIONS = (64, 256, 1000)
QUICK_S = 3
DRAIN_S = 30
SHARE_TARGET = 0.25
P99_TARGET_S = 0.050
# The target rows: the summary and active-users at the first connection count, no error at the last.
SUMMARY_ROW = "summary, 30 days"
ACTIVE_ROW = "active-users, 1 day (today: 10k users)"
TRIVIAL_ROW = "trivial aiohttp JSON handler"
ERROR_ROW = "error path: unknown token (401)"
_SERIES = re.compile(r'^activeusers_api_requests_total\{method="GET",route="([^"]+)",status="(\d+)"\} ([\d.e+]+)$')
_BATCHES = "activeusers_api_redis_batches_total"
_SAMPLE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?):\d+\)$")


@dataclass(frozen=True)
class Case:
    """One measured endpoint: its row name, server, path, headers, the status it must answer and the route
    template the service counts it under (``None`` for the trivial handler, which counts nothing)."""

    name: str
    server: Server
    path: str
    headers: Mapping[str, str]
    status: int
    route: str | None


def answered(metrics_text: str) -> dict[tuple[str, int], float]:
    """The service's answered requests by (route, status) from its ``/metrics`` text."""
    found: dict[tuple[str, int], float] = {}
    for line in metrics_text.splitlines():
        match = _SERIES.match(line)
        if match:
            found[(match[1], int(match[2]))] = float(match[3])
    return found


def counter(metrics_text: str, name: str) -> float:
    """The value of an unlabelled counter in ``/metrics`` text (0 when absent)."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ", 1)[1])
    return 0.0


def by_status(
    before: Mapping[tuple[str, int], float], after: Mapping[tuple[str, int], float], route: str
) -> dict[int, int]:
    """Answers of ``route`` between two readings of :func:`answered`, by status."""
    return {
        status: int(after[(r, status)] - before.get((r, status), 0))
        for r, status in sorted(after)
        if r == route and after[(r, status)] > before.get((r, status), 0)
    }


def self_time(raw: Iterable[str], top: int) -> list[tuple[str, float]]:
    """The ``top`` functions with the most samples of their own in py-spy's raw (collapsed) output, as shares."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw:
        sample = _SAMPLE.match(line.rstrip("\n"))
        if sample is None:
            continue
        count = int(sample["count"])
        total += count
        last = sample["stack"].rsplit(";", 1)[-1]
        frame = _FRAME.match(last)
        name = f"{frame['name']} ({frame['file'].split('site-packages/')[-1]})" if frame else last or "(no frame)"
        counts[name] += count
    return [(name, count / total) for name, count in counts.most_common(top)] if total else []


def metrics_of(server: Server) -> str:
    with urllib.request.urlopen(f"http://{server.host}:{server.port}/metrics", timeout=30) as response:
        return str(response.read().decode())


def settled(server: Server) -> str:
    """The service's metrics once the requests a run left in progress are answered (wrk stops with up to one
    request per connection still queued in the service; they would count in the next run), at most DRAIN_S."""
    deadline = time.monotonic() + DRAIN_S
    while True:
        text = metrics_of(server)
        if counter(text, "activeusers_api_requests_in_flight") == 0 or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextmanager
def profiled(server: Server, seconds: int, out: Path) -> Iterator[None]:
    """py-spy sampling ``server`` for ``seconds`` while the block runs (nothing when py-spy is not on PATH)."""
    spy = shutil.which("py-spy")
    if spy is None:
        yield
        return
    argv = [spy, "record", "-p", str(server.process.pid), "-d", str(seconds), "-r", "200"]
    process = subprocess.Popen(
        [*argv, "-f", "raw", "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        try:
            process.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def warm(cases: Iterable[Case]) -> None:
    """One request per endpoint: the caches a running service has are filled, and each answers as it must."""
    for case in cases:
        client = HttpClient(case.server.host, case.server.port, case.headers)
        try:
            status, _, _ = client.get(case.path)
        finally:
            client.close()
        if status != case.status:
            raise RuntimeError(f"{case.name}: warm-up answered {status}, expected {case.status}")


@dataclass(frozen=True)
class Row:
    """One wrk run: connections, round (at the first connection count), endpoint, wrk's figures, the answers by
    status and the Redis writes per request."""

    connections: int
    round: int
    case: Case
    result: dict[str, float]
    codes: dict[int, int]
    writes: float | None


def measure(case: Case, ours: Server, duration: int, connections: int, round_: int) -> Row:
    """One wrk run of ``case`` and what the service counted during it."""
    sys.stderr.write(f"wrk {duration} s, {connections} connections, round {round_}: {case.name}...\n")
    before = settled(ours)
    result = wrk(case.server, case.path, dict(case.headers), duration, connections)
    after = settled(ours)
    codes: dict[int, int] = {}
    writes: float | None = None
    if case.route is not None:
        codes = by_status(answered(before), answered(after), case.route)
        served = sum(codes.values())
        if served and _BATCHES in after:  # a tree without the coalescer has no such counter
            writes = (counter(after, _BATCHES) - counter(before, _BATCHES)) / served
    return Row(connections, round_, case, result, codes, writes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=30, help="seconds per wrk run (default 30)")
    parser.add_argument("--connections", type=int, nargs="+", default=list(CONNECTIONS), help="64 256 1000")
    parser.add_argument("--rounds", type=int, default=3, help="rounds at the first connection count (default 3)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_S} s per wrk run, one round")
    parser.add_argument(
        "--record", action="store_true", help="append the report to the benchmark history (docs/benchmarks/)"
    )
    parser.add_argument("--profile", action="store_true", help="then py-spy the API during one more summary run")
    args = parser.parse_args()
    require_env()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (bench/run does it when run as root)")
    duration = QUICK_S if args.quick else args.duration
    rounds = 1 if args.quick else max(1, args.rounds)
    settings = bench_settings("load")
    today = today_utc()
    rows: list[Row] = []
    hot: list[tuple[str, float]] = []
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, dataset_in_redis(settings, STANDARD, today):
        headers = auth_headers(settings)
        unknown = {"X-User-Id": BENCH_USER, "X-Auth-Token": "x" * 43}
        with api_server(settings, Path(tmp)) as ours, aux_server("trivial", settings, Path(tmp)) as trivial:
            cases = [
                Case(TRIVIAL_ROW, trivial, "/", {}, 200, None),
                Case(ACTIVE_ROW, ours, f"{ACTIVE_USERS_PATH}?{range_query(today, 1)}", headers, 200, ACTIVE_USERS_PATH),
                Case(SUMMARY_ROW, ours, f"{SUMMARY_PATH}?{range_query(today, 30)}", headers, 200, SUMMARY_PATH),
                Case(ERROR_ROW, ours, f"{SUMMARY_PATH}?{range_query(today, 30)}", unknown, 401, SUMMARY_PATH),
            ]
            warm(cases)
            loads.append(load_average())
            for connections in args.connections:
                # The shares are targets at the first connection count: measured in alternating rounds (the trivial
                # handler, then each endpoint), so that a burst of other work on the machine moves one round only.
                for round_ in range(1, (rounds if connections == args.connections[0] else 1) + 1):
                    rows += [measure(case, ours, duration, connections, round_) for case in cases]
            loads.append(load_average())
            if args.profile:
                # Apart from the measured runs: the sampler takes CPU from the machine's two cores too.
                profile = Path(tmp) / "profile.raw"
                summary = next(case for case in cases if case.name == SUMMARY_ROW)
                with profiled(ours, max(1, duration - 1), profile):
                    wrk(ours, summary.path, dict(summary.headers), duration, args.connections[0])
                if profile.exists():
                    hot = self_time(profile.read_text().splitlines(), 15)
    emit(report(rows, duration, args.connections, loads, hot), args.record)
    return 0


def report(
    rows: list[Row], duration: int, connections: list[int], loads: list[str], hot: list[tuple[str, float]]
) -> list[str]:
    """The section: the table, the targets and, when profiled, the hot functions."""
    base = {(row.connections, row.round): row.result["rate"] for row in rows if row.case.name == TRIVIAL_ROW}
    counts = ", ".join(f"{c:,}" for c in connections)
    rounds = max(row.round for row in rows)
    lines = [
        f"### API under load (wrk, 1 thread, {counts} connections, {duration} s each, loopback)",
        "",
        stamp("bench/load.py"),
        f"Dataset: {STANDARD.describe()}. One `active-users serve` (default settings) and the trivial handler, "
        "one aiohttp process each; wrk runs beside them on the same cores."
        + (f" At {connections[0]:,} connections {rounds} alternating rounds." if rounds > 1 else ""),
        f"Load average (1, 5, 15 min): {loads[0]} before the dataset, {loads[1]} before the runs, {loads[-1]} after.",
        "",
        "| connections | round | endpoint | req/s | share of trivial | p50 ms | p99 ms | answers by status "
        "| socket errors | Redis writes per request |",
        "|---:|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        r = row.result
        shown = ", ".join(f"{status}: {n:,}" for status, n in row.codes.items()) if row.codes else "-"
        lines.append(
            f"| {row.connections:,} | {row.round} | {row.case.name} | {r['rate']:,.0f} "
            f"| {r['rate'] / base[(row.connections, row.round)]:.0%} | {r['p50'] * 1000:,.1f} "
            f"| {r['p99'] * 1000:,.1f} | {shown} | {r['socket_errors']:,.0f} "
            f"| {'-' if row.writes is None else f'{row.writes:.3f}'} |"
        )
    trivial_non_2xx = ", ".join(f"{row.result['non_2xx']:,.0f}" for row in rows if row.case.name == TRIVIAL_ROW)
    lines += [
        "",
        "Answers by status: the service's own count of the run (`activeusers_api_requests_total`); the trivial "
        f"handler answers only 200 (wrk's non-2xx count for it: {trivial_non_2xx}). Socket errors: wrk's connect, "
        "read, write and timeout errors. Share of trivial: against the trivial handler's run of the same round.",
        "",
        *target_lines(rows, duration, connections, base),
    ]
    if hot:
        lines += hot_lines(hot, connections[0])
    lines.append("")
    return lines


def target_lines(
    rows: list[Row], duration: int, connections: list[int], base: dict[tuple[int, int], float]
) -> list[str]:
    """No error at the last connection count; the summary's and active-users' shares at the first (the median
    round's)."""
    lines = []
    last = connections[-1]
    checked = [row for row in rows if row.connections == last and row.case.name in (ACTIVE_ROW, SUMMARY_ROW)]
    wrong = sum(row.result["non_2xx"] for row in checked)
    lost = sum(row.result["socket_errors"] for row in checked)
    lines.append(
        target_line(
            f"active-users and summary at {last:,} connections for {duration} s: non-2xx answers, socket errors",
            f"{wrong:,.0f} non-2xx, {lost:,.0f} socket errors",
            "zero, Redis healthy",
            wrong == 0 and lost == 0,
        )
    )
    first = connections[0]
    for name, needs_p99 in ((SUMMARY_ROW, True), (ACTIVE_ROW, False)):
        measured = [row for row in rows if row.connections == first and row.case.name == name]
        shares = [row.result["rate"] / base[(first, row.round)] for row in measured]
        middle = sorted(range(len(measured)), key=lambda i: shares[i])[(len(measured) - 1) // 2]
        share, p99 = shares[middle], measured[middle].result["p99"]
        value, target = f"{share:.1%}", f"at least {SHARE_TARGET:.0%}"
        if needs_p99:
            value += f", p99 {p99 * 1000:,.1f} ms"
            target += f", p99 under {P99_TARGET_S * 1000:.0f} ms"
        if len(measured) > 1:
            value += " (median round; per round " + ", ".join(f"{x:.1%}" for x in shares) + ")"
        met = share >= SHARE_TARGET and (not needs_p99 or p99 < P99_TARGET_S)
        label = f"{name} at {first:,} connections: share of the trivial handler's req/s" + (
            ", p99" if needs_p99 else ""
        )
        trivial = base[(first, measured[middle].round)]
        lines.append(target_line(label, value, target, met, f"{trivial:,.0f} req/s", f"{share:.3f}"))
    return lines


def hot_lines(hot: list[tuple[str, float]], first: int) -> list[str]:
    """Where the API's time went, by function, from the profile."""
    return [
        "",
        f"Where the API's time went (py-spy at 200 Hz during one more summary run at {first:,} connections, apart "
        "from the measured ones; samples of each function's own, the kernel's work in a system call counted in "
        "the function that made it):",
        "",
        "| function | share of samples |",
        "|---|---:|",
        *(f"| `{name}` | {share:.1%} |" for name, share in hot),
    ]


if __name__ == "__main__":
    sys.exit(main())
