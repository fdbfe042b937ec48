"""Every benchmark script starts: its imports resolve and its command line answers ``--help`` (a script that
cannot even start would otherwise show up only when ``bench/run`` reaches it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.environment import REPO_ROOT

BENCH = REPO_ROOT / "bench"
# Scripts with a command line of their own (the others are modules the scripts import).
SCRIPTS = sorted(path for path in BENCH.glob("*.py") if "__main__" in path.read_text())


def test_there_are_scripts_to_check() -> None:
    assert {path.name for path in SCRIPTS} >= {"ingest.py", "query.py", "retention.py", "forget.py", "compare.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_the_script_starts(script: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_bench_run_starts() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "run"), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--quick" in result.stdout
