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
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import redis
from baseline import Side, answer, default_ref, side_settings, sides
from common import (
    ACTIVE_USERS_PATH,
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
    today_utc,
)
from figures import target_line
from keykinds import KindFigures, measure_kinds
from memory import LAYOUT_NOTE, layout_header, layout_rows, numbering_lines
from sizing import SIZING_HEADER, per_day, retention_of, retention_text, sizes, sizing_rows


@dataclass(frozen=True)
class Row:
    """A query row: its name, path and days (0 = chat-busier's start-only query at the end of today), its cold
    and warm p99 targets in seconds (None: none), whether its target is the baseline's p99 (cold and warm: no
    slower), and the dataset it runs on ("" = the run's own, ``--dataset``; "standard" = the standard one)."""

    name: str
    path: str
    days: int
    cold_target: float | None
    warm_target: float | None
    versus_baseline: bool = False
    dataset: str = ""


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
SLOW_COMMAND_TARGET_US = 5_000
# Issue 22: at most 3.0 MB per day in all at the large dataset; the 10M-daily-active sizing at most half the
# baseline's.
MEMORY_DAY_TARGET = 3.0e6
SIZING_SHARE_TARGET = 0.5
SIZING_TARGET_DAU = 10_000_000
INGEST_TARGET = 0.85
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
    both: Sequence[Side],
    url: str,
    headers: dict[str, dict[str, str]],
    counts: dict[str, int],
    budget_s: float,
    logs: Path,
    failed: dict[str, str],
) -> tuple[dict[str, list[float]], dict[str, bytes]]:
    """One API process per side, all running at once: each side's first request after its start (a cold
    sample), WARMUP requests, then up to ``counts[side]`` timed requests, the sides' requests alternating so that
    machine noise hits both; a side stops early (at least MIN_SAMPLES) once its own requests took ``budget_s``.
    Each side's times (the first request's first) and last body; a side answering an error is put in ``failed``
    (the others are still measured)."""
    times: dict[str, list[float]] = {side.label: [] for side in both}
    bodies: dict[str, bytes] = {}
    spent = {side.label: 0.0 for side in both}
    with ExitStack() as stack:
        clients = {}
        for side in both:
            server = stack.enter_context(side.api(logs, "warm"))
            clients[side.label] = client = HttpClient(server.host, server.port, headers[side.label])
            stack.callback(client.close)
        for i in range(1 + WARMUP + max(counts.values())):
            for side in both:
                label = side.label
                if label in failed or i > WARMUP + counts[label]:
                    continue
                if i > WARMUP + MIN_SAMPLES and spent[label] > budget_s:
                    continue
                status, body, seconds = clients[label].get(url)
                spent[label] += seconds
                if status != 200:
                    failed[label] = f"{label} {url}: HTTP {status}: {body[:200]!r}"
                    continue
                bodies[label] = body
                if i == 0 or i > WARMUP:
                    times[label].append(seconds)
    return times, bodies


def _normal(body: bytes) -> bytes:
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)


def compare_bodies(bodies: Sequence[bytes], by_day: bool = False) -> tuple[bool, str]:
    """Whether the sides' parsed bodies are equal, and a note. ``by_day`` (active-users: ``month``, one element
    per day): compared on the days both list, at least one (a tree that keeps ids fewer days lists fewer; the
    note says how many days each listed); any other body whole."""
    if len(bodies) < 2:
        return False, ""
    if not by_day:
        return len({_normal(body) for body in bodies}) == 1, ""
    parsed = [orjson.loads(body) for body in bodies]
    listed = [{(e["year"], e["month"], e["day"]): _normal(orjson.dumps(e)) for e in p["month"]} for p in parsed]
    common = set(listed[0]).intersection(*listed[1:])
    equal = bool(common) and all(len({days[day] for days in listed}) == 1 for day in common)
    rest = [{k: v for k, v in p.items() if k != "month"} for p in parsed]
    equal = equal and all(other == rest[0] for other in rest[1:])
    note = f"{len(common)} days both list"
    if any(len(days) != len(common) for days in listed):
        note += f" (listed: {' / '.join(str(len(days)) for days in listed)})"
    return equal, note


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
) -> tuple[dict[str, Latency], bool, str]:
    """Warm then cold samples of one row on both sides, alternating; whether the two sides' parsed bodies are
    equal (see :func:`compare_bodies`) and a note. The warm process' first request is the side's first for the
    row (``first``: nothing of it computed before); before each cold sample today's data is written again
    (``touch``), as a consumer does all day. A side's sampling stops early (at least MIN_SAMPLES) once it has
    taken ``budget_s`` / 2 warm and as much cold."""
    found = {side.label: Latency() for side in both}
    failed: dict[str, str] = {}
    wanted = ", ".join(f"{side.label} {warm_counts[side.label]}" for side in both)
    sys.stderr.write(f"{label}: warm, alternating ({wanted} requests)...\n")
    times, bodies = warm(both, url, headers, warm_counts, budget_s / 2, logs, failed)
    for side in both:
        if times[side.label]:
            found[side.label].first = times[side.label][0]
            found[side.label].warm = times[side.label][1:]
    equal, note = (False, "") if failed else compare_bodies(list(bodies.values()), ACTIVE_USERS_PATH in url)
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
    return found, equal, note


# --- report ------------------------------------------------------------------------------------------------


@dataclass
class RowResult:
    """One query row measured on both sides: latencies by side label, whether the bodies are equal (and a note),
    and the slowest command of each side."""

    row: Row
    dataset: str
    found: dict[str, Latency]
    equal: bool
    note: str
    slow: dict[str, SlowEntry | None]

    @property
    def label(self) -> str:
        return f"{self.row.name} {self.row.days or 'today'} ({self.dataset})"


def _ratio(mine: float, theirs: float) -> str:
    return f"{mine / theirs:.3f}" if theirs else "-"


def latency_lines(results: list[RowResult], new: Side, old: Side) -> list[str]:
    lines = [
        "| query | dataset | days | side | first ms | cold n | cold p50 ms | cold p99 ms | warm n | warm p50 ms"
        " | warm p99 ms | slowest command us | bodies equal |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    targets = []
    for result in results:
        row, found = result.row, result.found
        lead = [row.name, result.dataset, str(row.days or "today")]
        equal = ("yes" if result.equal else "**NO**") + (f" ({result.note})" if result.note else "")
        for side in (new, old):
            lat = found[side.label]
            entry = result.slow[side.label]
            cells = [*lead, side.label, ms(lat.first), str(len(lat.cold))]
            cells += [ms(p(lat.cold, 50)), ms(p(lat.cold, 99)), str(len(lat.warm))]
            cells += [ms(p(lat.warm, 50)), ms(p(lat.warm, 99))]
            cells += [f"{entry.micros:,}" if entry else "-", equal]
            lines.append("| " + " | ".join(cells) + " |")
        mine, theirs = found[new.label], found[old.label]
        lines.append(
            "| "
            + " | ".join(
                [
                    *lead,
                    "new/baseline",
                    _ratio(mine.first, theirs.first),
                    "",
                    _ratio(p(mine.cold, 50), p(theirs.cold, 50)),
                    _ratio(p(mine.cold, 99), p(theirs.cold, 99)),
                    "",
                    _ratio(p(mine.warm, 50), p(theirs.warm, 50)),
                    _ratio(p(mine.warm, 99), p(theirs.warm, 99)),
                    "",
                    "",
                ]
            )
            + " |"
        )
        label = f"{row.name} {f'{row.days} days' if row.days else 'today'} at the {result.dataset} dataset"
        targets.append(
            f"- {label}, the side's first request, nothing of it computed before (new; baseline"
            f" {ms(theirs.first)} ms): {ms(mine.first)} ms (not a target; see the reading below)"
        )
        for phase, target in (("cold", row.cold_target), ("warm", row.warm_target)):
            ours99, theirs99 = p(getattr(mine, phase), 99), p(getattr(theirs, phase), 99)
            if row.versus_baseline:
                targets.append(
                    target_line(
                        f"{label}, {phase} p99 (new; baseline {ms(theirs99)} ms; bodies"
                        f" {'equal' if result.equal else 'NOT equal'})",
                        f"{ms(ours99)} ms",
                        "no slower than the baseline's, bodies equal",
                        ours99 <= theirs99 and result.equal,
                    )
                )
            elif target is not None:
                targets.append(
                    target_line(
                        f"{label}, {phase} p99 (new; baseline {ms(theirs99)} ms)",
                        f"{ms(ours99)} ms",
                        f"under {target * 1000:.0f} ms",
                        ours99 < target,
                    )
                )
    return [*lines, "", *targets]


def slow_lines(write_slow: dict[str, SlowEntry | None], results: list[RowResult], new: Side, old: Side) -> list[str]:
    lines = ["| phase | side | slowest command us | command (first arguments) |", "|---|---|---:|---|"]
    worst_new = 0
    phases = [("write (dataset through the writer)", write_slow)]
    phases += [(f"query {result.label}", result.slow) for result in results]
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


def ids_days(figures: list[KindFigures]) -> str:
    """How many days the ids of a day's users are kept, by what: a tree's day sets (``day``, a SET per day)
    if it has them, else the day bitmaps (``day_bits``) the names lists turn into ids."""
    for kind, type_ in (("day", "set"), ("day_bits", "string")):
        for f in figures:
            if f.kind == kind and f.type == type_ and f.ndays:
                days = retention_of(f)
                return f"{'for good' if days is None else f'{days} days'} (`{kind}` {type_.upper()}s)"
    return "unknown"


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
        f" ratio {new_total / old_total:.3f} ({1 - new_total / old_total:.0%} below)",
        target_line(
            f"Redis bytes per day at the {data.name} dataset, every kind (new; baseline {old_total / 1e6:,.2f} MB;"
            f" ids kept: new {ids_days(figures[new.label])}, baseline {ids_days(figures[old.label])})",
            f"{new_total / 1e6:,.2f} MB",
            f"at most {MEMORY_DAY_TARGET / 1e6:.1f} MB",
            new_total <= MEMORY_DAY_TARGET,
        ),
        *numbering_lines(figures[new.label], "new"),
        *numbering_lines(figures[old.label], "baseline"),
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
        " numbering (the ids hash and, since issue 22, the names list: one key per user bucket) with the numbered"
        " users, kept for good; the versions hash as measured. Kept = per day times the retention measured from"
        " the keys' expiry (see above); the numbering is the only cost that grows with every user ever seen.",
    ]


def sizing_target(figures: dict[str, list[KindFigures]], new: Side, old: Side, data: Any) -> list[str]:
    """Issue 22's sizing target: the new layout kept at 10M daily active, at most half the baseline's."""
    mine, theirs = (
        sizes(figures[side.label], data.dau, data.users, (SIZING_TARGET_DAU,))[0].total for side in (new, old)
    )
    return [
        target_line(
            f"sizing at {SIZING_TARGET_DAU:,} daily active, total kept (new; baseline {theirs / 1e9:,.2f} GB)",
            f"{mine / 1e9:,.2f} GB ({mine / theirs:.2f}x the baseline's)",
            f"at most {SIZING_SHARE_TARGET:.0%} of the baseline's",
            mine <= theirs * SIZING_SHARE_TARGET,
        )
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


def main() -> int:
    # A terminated run still deletes its keys and restores the SLOWLOG configuration (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args()
    require_env()
    base = LARGE if args.dataset == "large" else STANDARD
    data = replace(base, days=args.days or (30 if args.quick else base.days))
    # The rows of the standard dataset run on it beside the run's own; the same dataset once.
    rows = [row for row in ROWS if not args.rows or row.name in args.rows]
    rows = [row for row in rows if row.dataset != data.name or not any(replace(row, dataset="") == r for r in rows)]
    extra = replace(STANDARD, days=data.days) if any(row.dataset == STANDARD.name for row in rows) else None
    if args.no_latency or data.name == STANDARD.name:
        extra = None
    today = today_utc()
    ref = args.baseline_ref or default_ref()
    with sides(ref) as (new, old), tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        logs = Path(tmp)
        both = (new, old)
        # The same trees under prefixes of their own, for the rows of the standard dataset.
        standard = tuple(replace(side, settings=side_settings(f"cmp-{side.label}-std")) for side in both)
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
                if extra is not None:
                    writing = {
                        side.label: side.start("seed", extra.name, str(extra.days), today.isoformat())
                        for side in standard
                    }
                    for process in writing.values():
                        answer(process)
                client.slowlog_reset()
                results: list[RowResult] = []
                failures: list[str] = []
                if not args.no_latency:
                    # Each side's token, by the prefix of the pair of sides (the run's dataset, the standard one).
                    headers: dict[str, dict[str, dict[str, str]]] = {}
                    for pair in (both, standard) if extra is not None else (both,):
                        for side in pair:
                            made = side.run("token")
                            token = {"X-User-Id": made["user"], "X-Auth-Token": made["token"]}
                            headers.setdefault(pair[0].settings.redis_key_prefix, {})[side.label] = token
                    cold_counts = {new.label: args.cold_samples, old.label: args.baseline_cold_samples}
                    warm_counts = {new.label: args.warm, old.label: args.baseline_warm}
                    for row in rows:
                        on_extra = extra is not None and row.dataset == extra.name
                        pair = standard if on_extra else both
                        result = RowResult(row, extra.name if on_extra and extra else data.name, {}, False, "", {})
                        found, equal, note = run_row(
                            pair,
                            today,
                            row_url(row.path, today, row.days),
                            headers[pair[0].settings.redis_key_prefix],
                            cold_counts,
                            warm_counts,
                            logs,
                            result.label,
                            args.row_budget_s,
                            failures,
                        )
                        result.found, result.equal, result.note = found, equal, note
                        result.slow = slowest(client, pair)
                        results.append(result)
        finally:
            for side in (*both, *standard):
                delete_prefix(side.settings.redis_url, side.settings.redis_key_prefix)
            client.close()
        ingest = [ingest_share(side, max(1, args.ingest_rounds)) for side in both] if args.ingest else []
    pairs = seeded[new.label]["pairs"]
    described = data.describe() + (f"; active-users also at {extra.describe()}" if extra is not None else "")
    lines = [
        f"### Issue 22 targets: this tree beside {old.commit[:9]} ({described})",
        "",
        stamp("bench/compare.py"),
        f"new = the working tree at {new.commit[:9]}; baseline = `{ref}` = {old.commit[:9]}, its files under /tmp run"
        " by the same interpreter (PYTHONPATH). Each side wrote the dataset through its own writer under its own"
        " prefix (seconds: new {:,.0f}, baseline {:,.0f}) and is served by its own `active-users serve`, same"
        " Redis (each side's `activeusers` and `api` packages checked to be imported from its own tree). Shared"
        " 2-core machine (other sessions' load included; load average at the end: {}).".format(
            seeded[new.label]["seconds"], seeded[old.label]["seconds"], load_average()
        ),
        "",
    ]
    if results:
        lines += [
            "#### Query latency, cold (first request after an API start) and warm",
            "",
            "first: the side's first request for the row (the warm process' first; nothing of it computed before,"
            " by any process). cold: a new API process per sample, each after today's data was written again"
            " (`bench/treescript.py touch`: one activity of one user today, as a consumer writes all day). warm: one"
            " process per side, both running, after warm-up, data unchanged. Cold and warm samples of the two sides"
            " alternate. Bodies: parsed and compared once per row (active-users: on the days both sides list).",
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
        *sizing_target(figures, new, old, data),
        "",
    ]
    for (text, share), side in zip(ingest, (new, old), strict=False):
        lines += [f"#### Ingest, {side.label} tree", "", text.strip(), ""]
        if side is new and share is not None:
            lines.append(
                target_line(
                    "ingest with the index on, share of the raw read",
                    f"{share:.0%}",
                    f"at least {INGEST_TARGET:.0%}",
                    share >= INGEST_TARGET,
                )
            )
            lines.append("")
    if not args.no_docs and not args.quick:
        write_sizing_doc(sizing)
    emit(lines, args.record)
    return 0


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (``uptime``'s), for the reading of a shared machine's figures."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
