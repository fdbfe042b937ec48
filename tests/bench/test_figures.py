"""``bench/figures.py``: a target figure is a bullet under its table, and a record for ``bench/run``'s table
when it asked for the figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from figures import FIGURES_ENV, Figure, figure_line, read_figures, table_row, target_line


def test_a_figure_is_a_bullet_and_no_record_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FIGURES_ENV, raising=False)
    assert target_line("p99", "9.8 ms", "under 50 ms", True) == "- p99: **9.8 ms** (target: under 50 ms; met)"
    assert target_line("share", "20%", "at least 25%", False) == "- share: **20%** (target: at least 25%; NOT met)"


def test_figures_are_recorded_in_order_with_their_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "figures.jsonl"
    monkeypatch.setenv(FIGURES_ENV, str(path))
    target_line("raw read", "99%", "at least 80%", True, "174,000/s", "0.99")
    target_line("p99", "9.8 ms", "under 50 ms", False)
    assert read_figures(path) == [
        Figure("raw read", "99%", "at least 80%", True, "174,000/s", "0.99"),
        Figure("p99", "9.8 ms", "under 50 ms", False),
    ]


def test_no_file_no_figures(tmp_path: Path) -> None:
    assert read_figures(tmp_path / "none.jsonl") == []


def test_a_table_row_escapes_pipes_and_says_missed() -> None:
    figure = Figure("a | b", "1", "2", False)
    row = table_row("load", figure, "2026-12-07", "bench/load.py --quick")
    assert row == "| load | a \\| b | 1 | - | - | 2 | **missed** | 2026-12-07 | `bench/load.py --quick` |"


def test_a_figure_without_a_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "figures.jsonl"
    monkeypatch.setenv(FIGURES_ENV, str(path))
    assert figure_line("bytes per day", "3.09 MB", "; more") == "- bytes per day: **3.09 MB**; more"
    [figure] = read_figures(path)
    assert table_row("memory", figure, "2026-12-07", "bench/memory.py") == (
        "| memory | bytes per day | 3.09 MB | - | - | - | - | 2026-12-07 | `bench/memory.py` |"
    )


def test_a_target_not_judged_is_neither_met_nor_missed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "figures.jsonl"
    monkeypatch.setenv(FIGURES_ENV, str(path))
    line = target_line("cold p99", "9 ms", "no slower than the baseline's", False, "8 ms", "1.1", unjudged="same tree")
    assert line == "- cold p99: **9 ms** (target: no slower than the baseline's; not judged: same tree)"
    [figure] = read_figures(path)
    assert figure.met is None
    assert table_row("compare", figure, "2026-12-07", "bench/compare.py --quick") == (
        "| compare | cold p99 | 9 ms | 8 ms | 1.1 | no slower than the baseline's (not judged: same tree) | - |"
        " 2026-12-07 | `bench/compare.py --quick` |"
    )
