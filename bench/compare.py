"""This tree beside a baseline git ref, in one run against the same Redis: issue 22's targets (and issue 14's).

Both sides get the same seeded dataset (large by default: 500k users, 100k daily active, 90 days), each written
through its OWN tree's writer under its own key prefix, and served by its OWN ``active-users serve``
(``bench/baseline.py``: the baseline is the ref's files under /tmp, run by the same interpreter with PYTHONPATH).
Rows of the standard dataset (10k daily active: active-users) get it too, under prefixes of their own.
Then, side by side:

- query latency: a side's first request for a row (nothing of it computed before), the first request after an
  API start (cold: a new process per sample, so a new pool and empty caches, each after today's data was written
  again as a consumer does) and warm (one process per side, both running, after warm-up), for active-users
  30 days (standard and large dataset), summary 30 and 90 days, users-by-time-of-the-day-in-a-week 90 days and
  chat-busier hourly-data; cold and warm samples of the two sides alternate, so machine noise hits both; the
  parsed bodies of the two sides are compared once per row (active-users: the days both list, a tree keeping
  ids fewer days lists fewer);
- SLOWLOG: reset before each phase, threshold ``--slowlog-us``; the slowest single command of each side in the
  write phase and in each query row (entries are told apart by the key prefix in their arguments);
- memory: every key measured and grouped by the kinds of each tree's own KeySchema (``bench/memory.py``), bytes
  per day by kind, bytes per user ever seen of the numbering kinds (ids hash, names list), and the sizing table
  for 10k..10M daily active users (``bench/sizing.py``), also written into ``docs/keys.md`` (section "Sizing")
  unless ``--no-docs`` or ``--quick`` (a quick run's 30 days are indicative only);
- with ``--ingest``: ``bench/ingest.py --quick`` of each tree (its own script and consumer), rate as a share of
  the raw read rate of the same run; the median of ``--ingest-rounds`` alternating rounds (a tree whose script
  has no ``--rounds``: of as many separate runs).

Usage: python bench/compare.py [--baseline-ref REF] [--quick] [--record] [--cold-samples N]
       [--baseline-cold-samples N] [--warm N] [--baseline-warm N] [--rows NAME ...] [--ingest]
       [--ingest-rounds N] [--no-latency] [--no-docs]
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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
from baseline import Side, answer, default_ref, side_settings, sides
from common import (
    ACTIVE_USERS_PATH,
    BY_TIME_OF_DAY_PATH,
    HOURLY_PATH,
    LARGE,
    STANDARD,
    SUMMARY_PATH,
    delete_prefix,
    emit,
    require_env,
    stamp,
    today_utc,
)
from comparereport import (
    load_average,
    memory_lines,
    query_lines,
    sizing_lines,
    sizing_target,
    write_sizing_doc,
)
from dataset import Dataset
from figures import FIGURES_ENV, target_line
from keykinds import KindFigures, measure_kinds
from rowsamples import Row, RowResult, row_url, run_row
from slowlog import SlowEntry, slowest, slowlog

ROWS = (
    # Issue 22: ids from the index for every retained day, no slower than the baseline's day-set path.
    Row("active-users", ACTIVE_USERS_PATH, 30, None, None, versus_baseline=True, dataset="standard"),
    Row("active-users", ACTIVE_USERS_PATH, 30, None, None, versus_baseline=True),
    # Issue 14's targets.
    Row("summary", SUMMARY_PATH, 30, 0.050, 0.010),
    Row("summary", SUMMARY_PATH, 90, 0.050, 0.010),
    Row("users-by-time-of-day", BY_TIME_OF_DAY_PATH, 90, 0.025, None),
    Row("hourly-data", HOURLY_PATH, 0, 0.025, None),
)
INGEST_TARGET = 0.85
RAW_SHARE = re.compile(r"active-users vs raw read: \*\*(\d+)%\*\*")


def ingest_share(side: Side, rounds: int) -> tuple[str, float | None]:
    """``bench/ingest.py --quick`` of the side's own tree, its median share of the raw read over ``rounds``
    alternating rounds, and its table. A tree whose script has no ``--rounds`` runs ``rounds`` times instead: the
    table of the run with the median share, with every run's share beneath it."""
    # The tree's own figures are this run's ingest target below, not records of their own.
    env = {name: value for name, value in os.environ.items() if name != FIGURES_ENV}
    env["BENCH_SIDE"] = side.label
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
    parser.add_argument("--rows", nargs="+", choices=sorted({row.name for row in ROWS}), help="only these query rows")
    parser.add_argument(
        "--row-budget-s", type=float, default=600, help="seconds per row after which sampling stops (at least 3)"
    )
    parser.add_argument("--slowlog-us", type=int, default=100, help="SLOWLOG threshold in microseconds")
    parser.add_argument("--ingest", action="store_true", help="also bench/ingest.py --quick of both trees")
    parser.add_argument("--ingest-rounds", type=int, default=5, help="ingest rounds (or runs) per tree, median kept")
    parser.add_argument("--no-latency", action="store_true", help="memory and sizing only")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not write the sizing table into docs/keys.md (--quick never does)"
    )
    parser.add_argument(
        "--record", action="store_true", help="append the report to the benchmark history (docs/benchmarks/)"
    )
    args = parser.parse_args()
    quick = args.quick
    args.cold_samples = args.cold_samples or (10 if quick else 100)
    args.baseline_cold_samples = args.baseline_cold_samples or (3 if quick else 20)
    args.warm = args.warm or (30 if quick else 200)
    args.baseline_warm = args.baseline_warm or (10 if quick else 30)
    return args


@dataclass
class Measured:
    """What a run measured on both sides: what each wrote, the write phase's slowest commands, the key kinds, the
    query rows (and the sides' failures) and, with ``--ingest``, each tree's ingest report and share."""

    seeded: dict[str, Any]
    write_slow: dict[str, SlowEntry | None]
    figures: dict[str, list[KindFigures]]
    results: list[RowResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ingest: list[tuple[str, float | None]] = field(default_factory=list)


def plan(args: argparse.Namespace) -> tuple[Dataset, list[Row], Dataset | None]:
    """The run's dataset, its query rows and the standard dataset its standard rows need (None: none)."""
    base = LARGE if args.dataset == "large" else STANDARD
    data = replace(base, days=args.days or (30 if args.quick else base.days))
    # The rows of the standard dataset run on it beside the run's own; the same dataset once.
    rows = [row for row in ROWS if not args.rows or row.name in args.rows]
    rows = [row for row in rows if row.dataset != data.name or not any(replace(row, dataset="") == r for r in rows)]
    extra = replace(STANDARD, days=data.days) if any(row.dataset == STANDARD.name for row in rows) else None
    if args.no_latency or data.name == STANDARD.name:
        extra = None
    return data, rows, extra


def schemas_of(both: Sequence[Side]) -> dict[str, Any]:
    """Each side's key kinds, after checking that its packages are imported from its own tree."""
    schemas = {side.label: side.run("schema") for side in both}
    for side in both:
        for module, path in schemas[side.label]["modules"].items():
            if not Path(path).resolve().is_relative_to(side.root.resolve()):
                sys.exit(f"{side.label}: {module} imported from {path}, not from {side.root}")
    return schemas


def seed(
    client: redis.Redis, both: Sequence[Side], standard: Sequence[Side], data: Dataset, extra: Dataset | None
) -> Measured:
    """The dataset written by both sides at once (the write phase is not a target; it halves the run's time),
    measured by kind; the standard dataset written too when a row needs it."""
    today = today_utc().isoformat()
    schemas = schemas_of(both)
    writing = {side.label: side.start("seed", data.name, str(data.days), today) for side in both}
    seeded = {label: answer(process) for label, process in writing.items()}
    write_slow = slowest(client, both)
    figures = {
        side.label: measure_kinds(client, side.settings.redis_key_prefix, schemas[side.label]["kinds"]) for side in both
    }
    if extra is not None:
        for process in [side.start("seed", extra.name, str(extra.days), today) for side in standard]:
            answer(process)
    client.slowlog_reset()
    return Measured(seeded, write_slow, figures)


def tokens(pairs: Sequence[Sequence[Side]]) -> dict[str, dict[str, dict[str, str]]]:
    """Each side's token headers, by the key prefix of the pair's first side and the side's label."""
    headers: dict[str, dict[str, dict[str, str]]] = {}
    for pair in pairs:
        for side in pair:
            made = side.run("token")
            token = {"X-User-Id": made["user"], "X-Auth-Token": made["token"]}
            headers.setdefault(pair[0].settings.redis_key_prefix, {})[side.label] = token
    return headers


def query_rows(
    args: argparse.Namespace,
    client: redis.Redis,
    pairs: tuple[Sequence[Side], Sequence[Side]],
    rows: Sequence[Row],
    data: Dataset,
    extra: Dataset | None,
    logs: Path,
    measured: Measured,
) -> None:
    """Every query row on its pair of sides (the run's dataset, or the standard one), into ``measured``."""
    both, standard = pairs
    new, old = both
    headers = tokens((both, standard) if extra is not None else (both,))
    cold_counts = {new.label: args.cold_samples, old.label: args.baseline_cold_samples}
    warm_counts = {new.label: args.warm, old.label: args.baseline_warm}
    today = today_utc()
    for row in rows:
        on_extra = extra is not None and row.dataset == extra.name
        pair = standard if on_extra else both
        result = RowResult(row, extra.name if on_extra and extra else data.name, {}, False, "", {})
        result.found, result.equal, result.note = run_row(
            pair,
            today,
            row_url(row.path, today, row.days),
            headers[pair[0].settings.redis_key_prefix],
            cold_counts,
            warm_counts,
            logs,
            result.label,
            args.row_budget_s,
            measured.failures,
        )
        result.slow = slowest(client, pair)
        measured.results.append(result)


def measure(
    args: argparse.Namespace, new: Side, old: Side, data: Dataset, rows: list[Row], extra: Dataset | None
) -> Measured:
    """Both sides seeded, measured and queried; every key of the run deleted afterwards."""
    both = (new, old)
    # The same trees under prefixes of their own, for the rows of the standard dataset.
    standard = tuple(replace(side, settings=side_settings(f"cmp-{side.label}-std")) for side in both)
    client = redis.Redis.from_url(new.settings.redis_url)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp, slowlog(client, args.slowlog_us):
            measured = seed(client, both, standard, data, extra)
            if not args.no_latency:
                query_rows(args, client, (both, standard), rows, data, extra, Path(tmp), measured)
    finally:
        for side in (*both, *standard):
            delete_prefix(side.settings.redis_url, side.settings.redis_key_prefix)
        client.close()
    if args.ingest:
        measured.ingest = [ingest_share(side, max(1, args.ingest_rounds)) for side in both]
    return measured


def other_days(data: Dataset) -> str:
    """Why the memory target is not judged on ``data`` ("": it is, on the large dataset's days)."""
    if (data.name, data.days) == (LARGE.name, LARGE.days):
        return ""
    return (
        f"{data.name} dataset over {data.days} days, the target is set on the large one over {LARGE.days}: the"
        " numbering, kept for good, is spread over other days"
    )


def report(
    args: argparse.Namespace, ref: str, new: Side, old: Side, data: Dataset, extra: Dataset | None, found: Measured
) -> list[str]:
    """The section: what ran, then latency, SLOWLOG, memory, sizing and ingest with their target figures."""
    described = data.describe() + (f"; active-users also at {extra.describe()}" if extra is not None else "")
    seconds = (found.seeded[new.label]["seconds"], found.seeded[old.label]["seconds"])
    lines = [
        f"### Issue 22 targets: this tree beside {old.commit[:9]} ({described})",
        "",
        stamp("bench/compare.py"),
        f"new = the working tree at {new.commit[:9]}; baseline = `{ref}` = {old.commit[:9]}, its files under /tmp run"
        " by the same interpreter (PYTHONPATH). Each side wrote the dataset through its own writer under its own"
        " prefix (seconds: new {:,.0f}, baseline {:,.0f}) and is served by its own `active-users serve`, same"
        " Redis (each side's `activeusers` and `api` packages checked to be imported from its own tree). Shared"
        " 2-core machine (other sessions' load included; load average at the end: {}).".format(
            *seconds, load_average()
        ),
        "",
    ]
    if old.same_as_new:
        lines += [
            "The baseline's files are this tree's (a clean clone beside its own merge-base with main): the run checks"
            " that every part of the comparison works, and its targets relative to the baseline are not judged.",
            "",
        ]
    if found.results:
        lines += query_lines(args.slowlog_us, found.write_slow, found.results, found.failures, new, old)
    lines += [
        "#### Memory by key kind",
        "",
        *memory_lines(found.figures, new, old, data, found.seeded[new.label]["pairs"], other_days(data)),
        "",
        "#### Sizing",
        "",
        *sizing_lines(found.figures, new, old, data),
        "",
        *sizing_target(found.figures, new, old, data),
        "",
    ]
    for (text, share), side in zip(found.ingest, (new, old), strict=False):
        lines += ingest_lines(text, share, side)
    return lines


def ingest_lines(text: str, share: float | None, side: Side) -> list[str]:
    """A tree's ingest report under a heading of its own (its headings one level below), with the new side's
    target figure."""
    demoted = "\n".join("##" + line if line.startswith("#") else line for line in text.strip().splitlines())
    lines = [f"#### Ingest, {side.label} tree", "", demoted, ""]
    if side.baseline or share is None:
        return lines
    return [
        *lines,
        target_line(
            "ingest with the index on, share of the raw read",
            f"{share:.0%}",
            f"at least {INGEST_TARGET:.0%}",
            share >= INGEST_TARGET,
            ratio=f"{share:.2f}",
        ),
        "",
    ]


def main() -> int:
    # A terminated run still deletes its keys and restores the SLOWLOG configuration (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args()
    require_env()
    data, rows, extra = plan(args)
    ref = args.baseline_ref or default_ref()
    with sides(ref) as (new, old):
        found = measure(args, new, old, data, rows, extra)
    lines = report(args, ref, new, old, data, extra, found)
    if not args.no_docs and not args.quick:
        write_sizing_doc(sizing_lines(found.figures, new, old, data))
    emit(lines, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
