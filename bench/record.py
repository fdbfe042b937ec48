"""The benchmark history, append-only: the one place that adds a benchmark's report to it.

The history is one file per day under ``docs/benchmarks/`` (BENCHMARKS.md holds only the table of current
figures); a report recorded today goes to today's file, created with its title when missing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

HISTORY = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"


def history_file(now: datetime | None = None) -> Path:
    """Today's history file (UTC), created with its title when missing."""
    day = (now or datetime.now(UTC)).date().isoformat()
    path = HISTORY / f"{day}.md"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Benchmark runs of {day}\n\nRecorded by `--record`; the machine: BENCHMARKS.md.\n")
    return path


def append_report(text: str, path: Path | None = None) -> None:
    """Append ``text`` as its own block: one blank line before it, so a heading never runs into the last reading."""
    path = path or history_file()
    previous = path.read_text() if path.exists() else ""
    separator = "" if not previous or previous.endswith("\n\n") else "\n" if previous.endswith("\n") else "\n\n"
    with path.open("a") as out:
        out.write(separator + text.strip("\n") + "\n")
