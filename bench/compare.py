"""This tree beside a baseline git ref, in one run against the same Redis: issue 14's targets.

Both sides get the same seeded dataset (large by default: 500k users, 100k daily active, 90 days), each written
through its OWN tree's writer under its own key prefix, and served by its OWN ``active-users serve``
(``bench/sides.py``: the baseline is the ref's files under /tmp, run by the same interpreter with PYTHONPATH).
Then, side by side:

- query latency: a side's first request for a row (nothing of it computed before), the first request after an
  API start (cold: a new process per sample, so a new pool and empty caches, each after today's data was written
  again as a consumer does) and warm (one process, after warm-up), for summary
  30 and 90 days, users-by-time-of-the-day-in-a-week 90 days and chat-busier hourly-data; cold samples of the
  two sides alternate, so machine noise hits both; the parsed bodies of the two sides are compared once per row;
- SLOWLOG: reset before each phase, threshold ``--slowlog-us``; the slowest single command of each side in the
  write phase and in each query row (entries are told apart by the key prefix in their arguments);
- memory: every key measured and grouped by the kinds of each tree's own KeySchema (``bench/memory.py``), bytes
  per day by kind, and the sizing table for 10k..10M daily active users (``bench/sizing.py``), also written into
  ``docs/keys.md`` (section "Sizing") unless ``--no-docs``;
- with ``--ingest``: ``bench/ingest.py --quick`` of each tree (its own script and consumer), rate as a share of
  the raw read rate of the same run; the median of ``--ingest-rounds`` alternating rounds (a tree whose script
  has no ``--rounds``: of as many separate runs).

Usage: python bench/compare.py [--baseline-ref REF] [--quick] [--record] [--cold-samples N]
       [--baseline-cold-samples N] [--warm N] [--baseline-warm N] [--ingest] [--ingest-rounds N]
       [--no-latency] [--no-docs]
``REF`` defaults to the merge-base of HEAD with main. Needs REDIS_URL (and Kafka for ``--ingest``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import redis
from common import (
    BY_TIME_OF_DAY_PATH,
    HOURLY_PATH,
    LARGE,
    REPO_ROOT,
    STANDARD,
    SUMMARY_PATH,
    HttpClient,
    delete_prefix,
    emit,
    ms,
    percentile,
    range_query,
    require_env,
    stamp,
    start_query,
    target_line,
    today_utc,
)
from memory import LAYOUT_NOTE, KindFigures, layout_header, layout_rows, measure_kinds
from sides import Side, answer, default_ref, sides
from sizing import SIZING_HEADER, per_day, retention_text, sizing_rows

# (row name, path, days; 0 = chat-busier's start-only query at the end of today), cold and warm p99 targets (s).
ROWS = (
    ("summary", SUMMARY_PATH, 30, 0.050, 0.010),
    ("summary", SUMMARY_PATH, 90, 0.050, 0.010),
    ("users-by-time-of-day", BY_TIME_OF_DAY_PATH, 90, 0.025, None),
    ("hourly-data", HOURLY_PATH, 0, 0.025, None),
)
SLOW_COMMAND_TARGET_US = 5_000
MEMORY_TARGET = 0.35
INGEST_TARGET = 0.75
WARMUP = 3
MIN_SAMPLES = 3
DOCS_KEYS = REPO_ROOT / "docs" / "keys.md"
# The measured table stands between these lines in docs/keys.md (its "Sizing" section), rewritten by every run
# that writes docs; a first run replaces the placeholder line that section keeps for it.
TABLE_BEGIN = "<!-- SIZING TABLE: measured by bench/compare.py, rewritten by it -->"
TABLE_END = "<!-- /SIZING TABLE -->"
PLACEHOLDER = "<!-- SIZING TABLE:"
RAW_SHARE = re.compile(r"active-users vs raw read: \*\*(\d+)%\*\*")


@dataclass
class Latency:
    first: float = float("nan")
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)


@dataclass
class SlowEntry:
    micros: int
    command: str


def p(values: Sequence[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def row_url(path: str, today: date, days: int) -> str:
    return f"{path}?{start_query(today) if days == 0 else range_query(today, days)}"


# --- SLOWLOG -----------------------------------------------------------------------------------------------


@contextmanager
def slowlog(client: redis.Redis, threshold_us: int) -> Iterator[None]:
    """SLOWLOG on at ``threshold_us`` for the block (the previous configuration restored afterwards)."""
    saved = client.config_get("slowlog-*")
    client.config_set("slowlog-log-slower-than", threshold_us)
    client.config_set("slowlog-max-len", 1_000_000)
    client.slowlog_reset()
    try:
        yield
    finally:
        for name, value in saved.items():
            client.config_set(name, value)


def slowest(client: redis.Redis, sides_: Sequence[Side]) -> dict[str, SlowEntry | None]:
    """The slowest logged command of each side since the last call (SLOWLOG read and reset)."""
    entries = client.execute_command("SLOWLOG", "GET", -1)
    client.slowlog_reset()
    found: dict[str, SlowEntry | None] = {side.label: None for side in sides_}
    for entry in entries:
        micros, args = int(entry[2]), [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in entry[3]]
        for side in sides_:
            if any(a.startswith(side.settings.redis_key_prefix) for a in args):
                best = found[side.label]
                if best is None or micros > best.micros:
                    shown = " ".join(a if len(a) <= 60 else a[:57] + "..." for a in args[:4])
                    found[side.label] = SlowEntry(micros, shown + (" ..." if len(args) > 4 else ""))
    return found


# --- latency -----------------------------------------------------------------------------------------------


def cold_once(side: Side, url: str, headers: dict[str, str], logs: Path) -> float:
    with side.api(logs, "cold") as server:
        client = HttpClient(server.host, server.port, headers)
        try:
            status, body, seconds = client.get(url)
        finally:
            client.close()
    if status != 200:
        raise RuntimeError(f"{side.label} {url}: HTTP {status}: {body[:200]!r}")
    return seconds


def warm(
    side: Side, url: str, headers: dict[str, str], count: int, budget_s: float, logs: Path
) -> tuple[list[float], bytes]:
    """The first request after a start (a cold sample), then up to ``count`` timed after warm-up (fewer, but at
    least MIN_SAMPLES, when they take longer than ``budget_s``), and the body."""
    with side.api(logs, "warm") as server:
        client = HttpClient(server.host, server.port, headers)
        try:
            times, body = [], b""
            started = time.monotonic()
            for i in range(1 + WARMUP + count):
                status, body, seconds = client.get(url)
                if status != 200:
                    raise RuntimeError(f"{side.label} {url}: HTTP {status}: {body[:200]!r}")
                if i == 0 or i > WARMUP:
                    times.append(seconds)
                if len(times) > MIN_SAMPLES and time.monotonic() - started > budget_s:
                    break
        finally:
            client.close()
    return times, body


def run_row(
    both: Sequence[Side],
    today: date,
    url: str,
    headers: dict[str, dict[str, str]],
    cold_counts: dict[str, int],
    warm_counts: dict[str, int],
    logs: Path,
    label: str,
    budget_s: float,
    failures: list[str],
) -> tuple[dict[str, Latency], bool]:
    """Warm then cold samples of one row on both sides; whether the two sides' parsed bodies are equal. The warm
    process' first request is the side's first for the row (``first``: nothing of it computed before); before
    each cold sample today's data is written again (``touch``), as a consumer does all day. A side's sampling
    stops early (at least MIN_SAMPLES) once it has taken ``budget_s`` / 2 warm and as much cold."""
    found = {side.label: Latency() for side in both}
    bodies = {}
    failed: dict[str, str] = {}
    for side in both:
        sys.stderr.write(f"{label}: {side.label} warm ({warm_counts[side.label]} requests)...\n")
        try:
            times, bodies[side.label] = warm(
                side, url, headers[side.label], warm_counts[side.label], budget_s / 2, logs
            )
        except RuntimeError as exc:  # this side answered an error: reported; the other side is still measured
            failed[side.label] = str(exc)
            continue
        found[side.label].first = times[0]
        found[side.label].warm = times[1:]
    equal = (
        not failed and len({orjson.dumps(orjson.loads(b), option=orjson.OPT_SORT_KEYS) for b in bodies.values()}) == 1
    )
    started = time.monotonic()
    spent = dict.fromkeys(cold_counts, 0.0)  # each side's own time: a slow side does not cut the other's samples
    for i in range(max(cold_counts.values())):
        for side in both:
            if side.label in failed or i >= cold_counts[side.label]:
                continue
            if i < MIN_SAMPLES or spent[side.label] < budget_s / 2:
                side.run("touch", today.isoformat())  # a consumer writing today, as it does all day
                begun = time.monotonic()
                try:
                    found[side.label].cold.append(cold_once(side, url, headers[side.label], logs))
                except RuntimeError as exc:
                    failed[side.label] = str(exc)
                spent[side.label] += time.monotonic() - begun
        done = ", ".join(f"{s.label} {len(found[s.label].cold)}/{cold_counts[s.label]}" for s in both)
        last = ", ".join(f"{ms(found[s.label].cold[-1])} ms" for s in both if found[s.label].cold)
        sys.stderr.write(f"\r{label} cold: {done} (last {last}; {time.monotonic() - started:,.0f} s)   ")
        sys.stderr.flush()
    sys.stderr.write("\n")
    for side_label, message in failed.items():
        failures.append(f"- {label}, {side_label}: **FAILED**: {message}")
    return found, equal


# --- report ------------------------------------------------------------------------------------------------


def latency_lines(
    results: list[tuple[str, int, dict[str, Latency], bool, dict[str, SlowEntry | None]]], new: Side, old: Side
) -> list[str]:
    lines = [
        "| query | days | side | first ms | cold n | cold p50 ms | cold p99 ms | warm n | warm p50 ms | warm p99 ms"
        " | slowest command us | bodies equal |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    targets = []
    limits = {(row[0], row[2]): row[3:] for row in ROWS}
    for name, days, found, equal, slow in results:
        cold_target, warm_target = limits[(name, days)]
        for side in (new, old):
            lat = found[side.label]
            entry = slow[side.label]
            cells = [name, str(days or "today"), side.label, ms(lat.first), str(len(lat.cold))]
            cells += [ms(p(lat.cold, 50)), ms(p(lat.cold, 99)), str(len(lat.warm))]
            cells += [ms(p(lat.warm, 50)), ms(p(lat.warm, 99))]
            cells += [f"{entry.micros:,}" if entry else "-", "yes" if equal else "**NO**"]
            lines.append("| " + " | ".join(cells) + " |")
        mine, theirs = found[new.label], found[old.label]
        ratio_cold = p(mine.cold, 99) / p(theirs.cold, 99)
        ratio_warm = p(mine.warm, 99) / p(theirs.warm, 99)
        lines.append(
            f"| {name} | {days or 'today'} | new/baseline | {mine.first / theirs.first:.3f} | |"
            f" {p(mine.cold, 50) / p(theirs.cold, 50):.3f}"
            f" | {ratio_cold:.3f} | | {p(mine.warm, 50) / p(theirs.warm, 50):.3f} | {ratio_warm:.3f} | | |"
        )
        span = f"{days} days" if days else "today"
        cold99 = p(mine.cold, 99)
        targets.append(
            f"- {name} {span}, the side's first request, nothing of it computed before (new; baseline"
            f" {ms(theirs.first)} ms): {ms(mine.first)} ms (not a target; see the reading below)"
        )
        targets.append(
            target_line(
                f"{name} {span}, cold p99 (new; baseline {ms(p(theirs.cold, 99))} ms)",
                f"{ms(cold99)} ms",
                f"under {cold_target * 1000:.0f} ms",
                cold99 < cold_target,
            )
        )
        if warm_target is not None:
            warm99 = p(mine.warm, 99)
            targets.append(
                target_line(
                    f"{name} {span}, warm p99 (new; baseline {ms(p(theirs.warm, 99))} ms)",
                    f"{ms(warm99)} ms",
                    f"under {warm_target * 1000:.0f} ms",
                    warm99 < warm_target,
                )
            )
    return [*lines, "", *targets]


def slow_lines(write_slow: dict[str, SlowEntry | None], results: list[Any], new: Side, old: Side) -> list[str]:
    lines = ["| phase | side | slowest command us | command (first arguments) |", "|---|---|---:|---|"]
    worst_new = 0
    phases = [("write (dataset through the writer)", write_slow)]
    phases += [(f"query {name} {days or 'today'}", slow) for name, days, _, _, slow in results]
    for phase, slow in phases:
        for side in (new, old):
            entry = slow[side.label]
            if side is new and entry is not None and not phase.startswith("write"):
                worst_new = max(worst_new, entry.micros)
            command = f"`{entry.command}`" if entry else "(none over the threshold)"
            lines.append(f"| {phase} | {side.label} | {f'{entry.micros:,}' if entry else '-'} | {command} |")
    write_new = write_slow[new.label].micros if write_slow[new.label] else 0
    lines += [
        "",
        target_line(
            "slowest single Redis command of the new side's queries (SLOWLOG)",
            f"{worst_new / 1000:,.2f} ms",
            "no command over 5 ms",
            worst_new <= SLOW_COMMAND_TARGET_US,
        ),
        f"- slowest single Redis command of the new side's writes: {write_new / 1000:,.2f} ms",
    ]
    return lines


def memory_lines(figures: dict[str, list[KindFigures]], new: Side, old: Side, data: Any, pairs: int) -> list[str]:
    def total(side: Side) -> float:
        return sum(per_day(f, data.days) for f in figures[side.label] if f.kind != "tokens")

    new_total, old_total = total(new), total(old)
    index = [f for f in figures[new.label] if f.type == "string" and f.ndays]
    index_day = sum(per_day(f, data.days) for f in index)
    lines = [
        *layout_header(True),
        *layout_rows(figures[new.label], data.days, new.label),
        *layout_rows(figures[old.label], data.days, old.label),
        "",
        LAYOUT_NOTE,
        "",
        f"Retention measured from the keys' expiry: new: {retention_text(figures[new.label])}; baseline:"
        f" {retention_text(figures[old.label])}.",
        "",
        f"- Redis bytes per day, every kind (new / baseline): {new_total / 1e6:,.2f} MB / {old_total / 1e6:,.2f} MB,"
        f" ratio {new_total / old_total:.3f}",
        target_line(
            f"Redis bytes per day at the {data.name} dataset, new vs baseline",
            f"{1 - new_total / old_total:.0%} below ({new_total / 1e6:,.2f} MB vs {old_total / 1e6:,.2f} MB)",
            "at least 35% below",
            1 - new_total / old_total >= MEMORY_TARGET,
        ),
    ]
    if index:
        per_pair = index_day * data.days / max(pairs, 1)
        lines.append(
            f"- the index itself (bitmap kinds: {', '.join(f'`{f.kind}`' for f in index)}): {index_day / 1e6:,.3f} MB"
            f" per day, **{per_pair:.3f} bytes per (user, day)** ({data.dau:,} daily active)"
        )
    return lines


def sizing_lines(figures: dict[str, list[KindFigures]], new: Side, old: Side, data: Any) -> list[str]:
    rows = sizing_rows(figures[new.label], data.dau, data.users, "new")
    rows += sizing_rows(figures[old.label], data.dau, data.users, "baseline")
    return [
        *SIZING_HEADER,
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "Computed by `bench/sizing.py` from the per-key figures measured above: set bytes scale with the daily"
        " active users; bitmap bytes with the numbered users (every user seen; assumed "
        f"{data.users // data.dau}x the daily active, as in the dataset), plus a measured overhead per key; the"
        " numbering hash with the numbered users, kept for good. Kept = per day times the retention measured from"
        " the keys' expiry (see above); the numbering is the only cost that grows with every user ever seen.",
    ]


def write_sizing_doc(lines: list[str]) -> None:
    """Put the measured table into docs/keys.md's "Sizing" section (between TABLE_BEGIN and TABLE_END)."""
    text = DOCS_KEYS.read_text()
    block = "\n".join([TABLE_BEGIN, "", f"Measured by {stamp('bench/compare.py')}", "", *lines, "", TABLE_END])
    if TABLE_BEGIN in text and TABLE_END in text:
        head, rest = text.split(TABLE_BEGIN, 1)
        text = head + block + rest.split(TABLE_END, 1)[1]
    elif PLACEHOLDER in text:
        head, rest = text.split(PLACEHOLDER, 1)
        text = head + block + rest.split("-->", 1)[1]
    else:
        text = text.rstrip() + "\n\n## Sizing\n\n" + block + "\n"
    DOCS_KEYS.write_text(text)


def ingest_share(side: Side, rounds: int) -> tuple[str, float | None]:
    """``bench/ingest.py --quick`` of the side's own tree, its median share of the raw read over ``rounds``
    alternating rounds, and its table. A tree whose script has no ``--rounds`` runs ``rounds`` times instead: the
    table of the run with the median share, with every run's share beneath it."""
    env = {**os.environ, "BENCH_SIDE": side.label}
    if side.baseline:
        env["PYTHONPATH"] = str(side.root)
    script = side.root / "bench" / "ingest.py"
    in_rounds = '"--rounds"' in script.read_text()
    runs: list[tuple[str, float]] = []
    for run in range(1 if in_rounds else rounds):
        sys.stderr.write(f"ingest: {side.label} (bench/ingest.py --quick of its tree, run {run + 1})...\n")
        done = subprocess.run(
            [sys.executable, str(script), "--quick", *(("--rounds", str(rounds)) if in_rounds else ())],
            env=env,
            cwd=side.root,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        match = RAW_SHARE.search(done.stdout)
        if match is None:
            return done.stdout, None
        runs.append((done.stdout, int(match[1]) / 100))
    ordered = sorted(runs, key=lambda found: found[1])
    text, share = ordered[(len(ordered) - 1) // 2]
    if len(runs) > 1:
        shares = ", ".join(f"{found:.0%}" for _, found in runs)
        text = f"{text.rstrip()}\n\nThe run above has the median share of {len(runs)} separate runs: {shares}.\n"
    return text, share


# --- main --------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-ref", default=None, help="git ref of today's code path (default: merge-base)")
    parser.add_argument("--dataset", choices=("large", "standard"), default="large")
    parser.add_argument("--days", type=int, default=None, help="days of the dataset (default: its own, 90)")
    parser.add_argument("--quick", action="store_true", help="10/3 cold samples, 30/10 warm, 30 days")
    parser.add_argument("--cold-samples", type=int, default=None, help="new side's starts per row (default 100)")
    parser.add_argument("--baseline-cold-samples", type=int, default=None, help="baseline starts per row (20)")
    parser.add_argument("--warm", type=int, default=None, help="new side's warm requests per row (default 200)")
    parser.add_argument("--baseline-warm", type=int, default=None, help="baseline warm requests per row (30)")
    parser.add_argument("--rows", nargs="+", choices=sorted({row[0] for row in ROWS}), help="only these query rows")
    parser.add_argument(
        "--row-budget-s", type=float, default=600, help="seconds per row after which sampling stops (at least 3)"
    )
    parser.add_argument("--slowlog-us", type=int, default=100, help="SLOWLOG threshold in microseconds")
    parser.add_argument("--ingest", action="store_true", help="also bench/ingest.py --quick of both trees")
    parser.add_argument("--ingest-rounds", type=int, default=5, help="ingest rounds (or runs) per tree, median kept")
    parser.add_argument("--no-latency", action="store_true", help="memory and sizing only")
    parser.add_argument("--no-docs", action="store_true", help="do not write the sizing table into docs/keys.md")
    parser.add_argument("--record", action="store_true", help="append the report to BENCHMARKS.md")
    args = parser.parse_args()
    quick = args.quick
    args.cold_samples = args.cold_samples or (10 if quick else 100)
    args.baseline_cold_samples = args.baseline_cold_samples or (3 if quick else 20)
    args.warm = args.warm or (30 if quick else 200)
    args.baseline_warm = args.baseline_warm or (10 if quick else 30)
    return args


def main() -> int:
    # A terminated run still deletes its keys and restores the SLOWLOG configuration (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args()
    require_env()
    base = LARGE if args.dataset == "large" else STANDARD
    data = replace(base, days=args.days or (30 if args.quick else base.days))
    today = today_utc()
    ref = args.baseline_ref or default_ref()
    with sides(ref) as (new, old), tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        logs = Path(tmp)
        both = (new, old)
        client = redis.Redis.from_url(new.settings.redis_url)
        schemas = {side.label: side.run("schema") for side in both}
        for side in both:
            for module, path in schemas[side.label]["modules"].items():
                if not Path(path).resolve().is_relative_to(side.root.resolve()):
                    sys.exit(f"{side.label}: {module} imported from {path}, not from {side.root}")
        try:
            with slowlog(client, args.slowlog_us):
                # Both sides write at once (the write phase is not a target; it halves the run's time).
                writing = {
                    side.label: side.start("seed", data.name, str(data.days), today.isoformat()) for side in both
                }
                seeded = {label: answer(process) for label, process in writing.items()}
                write_slow = slowest(client, both)
                figures = {
                    side.label: measure_kinds(client, side.settings.redis_key_prefix, schemas[side.label]["kinds"])
                    for side in both
                }
                client.slowlog_reset()
                results = []
                failures: list[str] = []
                if not args.no_latency:
                    headers = {}
                    for side in both:
                        made = side.run("token")
                        headers[side.label] = {"X-User-Id": made["user"], "X-Auth-Token": made["token"]}
                    cold_counts = {new.label: args.cold_samples, old.label: args.baseline_cold_samples}
                    warm_counts = {new.label: args.warm, old.label: args.baseline_warm}
                    for name, path, days, _, _ in ROWS:
                        label = f"{name} {days or 'today'}"
                        if args.rows and name not in args.rows:
                            continue
                        found, equal = run_row(
                            both,
                            today,
                            row_url(path, today, days),
                            headers,
                            cold_counts,
                            warm_counts,
                            logs,
                            label,
                            args.row_budget_s,
                            failures,
                        )
                        results.append((name, days, found, equal, slowest(client, both)))
        finally:
            for side in both:
                delete_prefix(side.settings.redis_url, side.settings.redis_key_prefix)
            client.close()
        ingest = [ingest_share(side, max(1, args.ingest_rounds)) for side in both] if args.ingest else []
    pairs = seeded[new.label]["pairs"]
    lines = [
        f"### Issue 14 targets: this tree beside {old.commit[:9]} ({data.describe()})",
        "",
        stamp("bench/compare.py"),
        f"new = the working tree at {new.commit[:9]}; baseline = `{ref}` = {old.commit[:9]}, its files under /tmp run"
        " by the same interpreter (PYTHONPATH). Each side wrote the dataset through its own writer under its own"
        " prefix (seconds: new {:,.0f}, baseline {:,.0f}) and is served by its own `active-users serve`, same"
        " Redis (each side's `activeusers` and `api` packages checked to be imported from its own tree). Shared"
        " 2-core machine (other sessions' load included).".format(
            seeded[new.label]["seconds"], seeded[old.label]["seconds"]
        ),
        "",
    ]
    if results:
        lines += [
            "#### Query latency, cold (first request after an API start) and warm",
            "",
            "first: the side's first request for the row (the warm process' first; nothing of it computed before,"
            " by any process). cold: a new API process per sample, each after today's data was written again"
            " (`bench/side.py touch`: one activity of one user today, as a consumer writes all day). warm: one"
            " process, after warm-up, data unchanged.",
            "",
            *latency_lines(results, new, old),
            *failures,
            "",
            f"#### SLOWLOG (threshold {args.slowlog_us:,} us; each phase read and reset)",
            "",
            *slow_lines(write_slow, results, new, old),
            "",
        ]
    sizing = sizing_lines(figures, new, old, data)
    lines += [
        "#### Memory by key kind",
        "",
        *memory_lines(figures, new, old, data, pairs),
        "",
        "#### Sizing",
        "",
        *sizing,
        "",
    ]
    for (text, share), side in zip(ingest, (new, old), strict=False):
        lines += [f"#### Ingest, {side.label} tree", "", text.strip(), ""]
        if side is new and share is not None:
            lines.append(
                target_line(
                    "ingest with the index on, share of the raw read",
                    f"{share:.0%}",
                    "at least 75%",
                    share >= INGEST_TARGET,
                )
            )
            lines.append("")
    if not args.no_docs:
        write_sizing_doc(sizing)
    emit(lines, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
