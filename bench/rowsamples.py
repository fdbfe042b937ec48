"""A query row sampled on both sides of ``bench/compare.py``: first, cold and warm latencies, alternating between the
sides, and whether their parsed bodies are equal."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson
from baseline import Side
from common import (
    ACTIVE_USERS_PATH,
    HttpClient,
    first_answer,
    ms,
    percentile,
    range_query,
    start_query,
)
from slowlog import SlowEntry

WARMUP = 3
MIN_SAMPLES = 3


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


@dataclass
class Latency:
    first: float = float("nan")
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)


def p(values: Sequence[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def row_url(path: str, today: date, days: int) -> str:
    return f"{path}?{start_query(today) if days == 0 else range_query(today, days)}"


def cold_once(side: Side, url: str, headers: dict[str, str], logs: Path) -> float:
    with side.api(logs, "cold") as server:
        return first_answer(server, url, headers, f"{side.label} ")[1]


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
