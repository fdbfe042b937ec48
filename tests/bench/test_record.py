"""``bench/record.py``: every report lands in BENCHMARKS.md as its own block, whatever the file ended with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from record import append_report


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, "### Run\n| a |\n"),
        ("", "### Run\n| a |\n"),
        ("Reading: last run.", "Reading: last run.\n\n### Run\n| a |\n"),
        ("Reading: last run.\n", "Reading: last run.\n\n### Run\n| a |\n"),
        ("Reading: last run.\n\n", "Reading: last run.\n\n### Run\n| a |\n"),
    ],
    ids=["no file", "empty", "no newline", "one newline", "blank line"],
)
def test_a_report_is_appended_after_one_blank_line(tmp_path: Path, before: str | None, after: str) -> None:
    path = tmp_path / "BENCHMARKS.md"
    if before is not None:
        path.write_text(before)
    append_report("\n### Run\n| a |\n\n", path)
    assert path.read_text() == after


def test_two_reports_in_a_row_stay_apart(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    append_report("### One", path)
    append_report("### Two", path)
    assert path.read_text() == "### One\n\n### Two\n"
