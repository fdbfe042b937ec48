"""The report of ``bench/compare.py``: the two sides' latency, SLOWLOG, memory and sizing tables, their target
figures, and the sizing table written into ``docs/keys.md``."""

from __future__ import annotations

import os
from typing import Any

from baseline import Side
from common import (
    REPO_ROOT,
    ms,
    stamp,
)
from figures import target_line
from keykinds import KindFigures
from memory import LAYOUT_NOTE, layout_header, layout_rows, numbering_lines
from rowsamples import RowResult, p
from sizing import SIZING_HEADER, per_day, retention_of, retention_text, sizes, sizing_rows
from slowlog import SlowEntry

SLOW_COMMAND_TARGET_US = 5_000
# Issue 22: at most 3.0 MB per day in all at the large dataset; the 10M-daily-active sizing at most half the
# baseline's.
MEMORY_DAY_TARGET = 3.0e6
SIZING_SHARE_TARGET = 0.5
SIZING_TARGET_DAU = 10_000_000
DOCS_KEYS = REPO_ROOT / "docs" / "keys.md"
# The measured table stands between these lines in docs/keys.md (its "Sizing" section), rewritten by every run
# that writes docs; a first run replaces the placeholder line that section keeps for it.
TABLE_BEGIN = "<!-- SIZING TABLE: measured by bench/compare.py, rewritten by it -->"
TABLE_END = "<!-- /SIZING TABLE -->"
PLACEHOLDER = "<!-- SIZING TABLE:"


def _ratio(mine: float, theirs: float) -> str:
    return f"{mine / theirs:.3f}" if theirs else "-"


def side_rows(result: RowResult, new: Side, old: Side) -> list[str]:
    """A row's latencies on each side, then the new side's over the baseline's."""
    row, found = result.row, result.found
    lead = [row.name, result.dataset, str(row.days or "today")]
    equal = ("yes" if result.equal else "**NO**") + (f" ({result.note})" if result.note else "")
    lines = []
    for side in (new, old):
        lat = found[side.label]
        entry = result.slow[side.label]
        cells = [*lead, side.label, ms(lat.first), str(len(lat.cold))]
        cells += [ms(p(lat.cold, 50)), ms(p(lat.cold, 99)), str(len(lat.warm))]
        cells += [ms(p(lat.warm, 50)), ms(p(lat.warm, 99))]
        cells += [f"{entry.micros:,}" if entry else "-", equal]
        lines.append("| " + " | ".join(cells) + " |")
    mine, theirs = found[new.label], found[old.label]
    ratios = [_ratio(mine.first, theirs.first), "", _ratio(p(mine.cold, 50), p(theirs.cold, 50))]
    ratios += [_ratio(p(mine.cold, 99), p(theirs.cold, 99)), "", _ratio(p(mine.warm, 50), p(theirs.warm, 50))]
    ratios += [_ratio(p(mine.warm, 99), p(theirs.warm, 99)), "", ""]
    lines.append("| " + " | ".join([*lead, "new/baseline", *ratios]) + " |")
    return lines


def self_compared(old: Side) -> str:
    """Why a target relative to the baseline is not judged ("": it is): the baseline is this very tree."""
    return "the baseline is this same tree, so the ratio is run-to-run noise" if old.same_as_new else ""


def row_targets(result: RowResult, new: Side, old: Side) -> list[str]:
    """A row's first request (not a target) and its cold and warm p99 target figures."""
    row, mine, theirs = result.row, result.found[new.label], result.found[old.label]
    label = f"{row.name} {f'{row.days} days' if row.days else 'today'} at the {result.dataset} dataset"
    targets = [
        f"- {label}, the side's first request, nothing of it computed before (new; baseline"
        f" {ms(theirs.first)} ms): {ms(mine.first)} ms (not a target; see the reading below)"
    ]
    for phase, target in (("cold", row.cold_target), ("warm", row.warm_target)):
        ours99, theirs99 = p(getattr(mine, phase), 99), p(getattr(theirs, phase), 99)
        versus = {"baseline": f"{ms(theirs99)} ms", "ratio": _ratio(ours99, theirs99)}
        if row.versus_baseline:
            targets.append(
                target_line(
                    f"{label}, {phase} p99 (new; baseline {ms(theirs99)} ms; bodies"
                    f" {'equal' if result.equal else 'NOT equal'})",
                    f"{ms(ours99)} ms",
                    "no slower than the baseline's, bodies equal",
                    ours99 <= theirs99 and result.equal,
                    **versus,
                    unjudged=self_compared(old),
                )
            )
        elif target is not None:
            targets.append(
                target_line(
                    f"{label}, {phase} p99 (new; baseline {ms(theirs99)} ms)",
                    f"{ms(ours99)} ms",
                    f"under {target * 1000:.0f} ms",
                    ours99 < target,
                    **versus,
                )
            )
    return targets


def latency_lines(results: list[RowResult], new: Side, old: Side) -> list[str]:
    """The latency table of every row on both sides, then the rows' target figures."""
    lines = [
        "| query | dataset | days | side | first ms | cold n | cold p50 ms | cold p99 ms | warm n | warm p50 ms"
        " | warm p99 ms | slowest command us | bodies equal |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        lines += side_rows(result, new, old)
    return [*lines, "", *(line for result in results for line in row_targets(result, new, old))]


def query_lines(
    slowlog_us: int,
    write_slow: dict[str, SlowEntry | None],
    results: list[RowResult],
    failures: list[str],
    new: Side,
    old: Side,
) -> list[str]:
    """The query latency and SLOWLOG subsections."""
    return [
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
        f"#### SLOWLOG (threshold {slowlog_us:,} us; each phase read and reset)",
        "",
        *slow_lines(write_slow, results, new, old),
        "",
    ]


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


def memory_lines(
    figures: dict[str, list[KindFigures]], new: Side, old: Side, data: Any, pairs: int, unjudged: str = ""
) -> list[str]:
    """The bytes per day of every kind on both sides and the new side's target figure (not judged, ``unjudged``
    says why, when the dataset is not the one the target is set on)."""

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
            f"{old_total / 1e6:,.2f} MB",
            f"{new_total / old_total:.3f}",
            unjudged=unjudged,
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
            f"{theirs / 1e9:,.2f} GB",
            f"{mine / theirs:.2f}",
            unjudged=self_compared(old),
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


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (``uptime``'s), for the reading of a shared machine's figures."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())
