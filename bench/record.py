"""BENCHMARKS.md, append-only: the one place that adds a benchmark's report to it."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def append_report(text: str, path: Path = BENCHMARKS_MD) -> None:
    """Append ``text`` as its own block: one blank line before it, so a heading never runs into the last reading."""
    previous = path.read_text() if path.exists() else ""
    separator = "" if not previous or previous.endswith("\n\n") else "\n" if previous.endswith("\n") else "\n\n"
    with path.open("a") as out:
        out.write(separator + text.strip("\n") + "\n")
