"""The figures a benchmark holds against its targets: a bullet under its table, and a record for ``bench/run``.

Every target figure goes through :func:`target_line`. When ``bench/run`` starts a benchmark it names a file in
``BENCH_FIGURES``; each figure is then also appended there as one JSON line, and ``bench/run`` renders the
records of every benchmark as the rows of BENCHMARKS.md's table of current figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FIGURES_ENV = "BENCH_FIGURES"
TABLE_HEADER = (
    "| benchmark | figure | value | baseline | ratio | target | met | date | command |",
    "|---|---|---:|---:|---:|---|---|---|---|",
)


@dataclass(frozen=True)
class Figure:
    """One measured figure: its value beside its target, and the baseline it is measured against ("-": none)."""

    label: str
    value: str
    target: str
    met: bool | None  # None: a figure without a target
    baseline: str = "-"
    ratio: str = "-"


def target_line(
    label: str, value: str, target: str, met: bool, baseline: str = "-", ratio: str = "-", unjudged: str = ""
) -> str:
    """The figure as a bullet under a table, recorded for ``bench/run`` when it asked for the figures. With
    ``unjudged`` (why), the target is stated but not judged: neither met nor missed."""
    if unjudged:
        _record(Figure(label, value, f"{target} (not judged: {unjudged})", None, baseline, ratio))
        return f"- {label}: **{value}** (target: {target}; not judged: {unjudged})"
    _record(Figure(label, value, target, met, baseline, ratio))
    return f"- {label}: **{value}** (target: {target}; {'met' if met else 'NOT met'})"


def figure_line(label: str, value: str, detail: str = "") -> str:
    """A figure without a target (a benchmark's headline measure), as a bullet and a record like a target's."""
    _record(Figure(label, value, "-", None))
    return f"- {label}: **{value}**{detail}"


def _record(figure: Figure) -> None:
    path = os.environ.get(FIGURES_ENV)
    if path:
        with Path(path).open("a") as out:
            out.write(json.dumps(asdict(figure)) + "\n")


def read_figures(path: Path) -> list[Figure]:
    """The figures a benchmark recorded in ``path`` (none when it wrote none)."""
    if not path.exists():
        return []
    return [Figure(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def table_row(benchmark: str, figure: Figure, day: str, command: str) -> str:
    """One row of BENCHMARKS.md's table of current figures (see :data:`TABLE_HEADER`)."""
    cells = [benchmark, figure.label, figure.value, figure.baseline, figure.ratio, figure.target]
    cells += ["-" if figure.met is None else "met" if figure.met else "**missed**", day, f"`{command}`"]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
