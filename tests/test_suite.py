"""The test suite's own machinery (``tests/conftest.py``, ``tests.support``): a missing service skips locally with
one loud line and fails under CI, a test that reaches a service unmarked fails, and the test folders that mirror
the packages do not shadow them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import activeusers
import api
import consumer
from tests.support.environment import REPO_ROOT
from tests.support.network import free_port
from tests.support.services import skipped_line

TWO_NEED_REDIS = """
def test_one(redis_url):
    pass

def test_two(redis_prefix):
    pass

def test_none():
    pass
"""


def _pytest(directory: Path, source: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``source`` beside a copy of the suite's conftest, with ``env`` over a clean environment."""
    (directory / "conftest.py").write_text((REPO_ROOT / "tests" / "conftest.py").read_text())
    (directory / "test_it.py").write_text(source)
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "KAFKA_", "CI"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:warnings", "-q", str(directory)],
        env={**kept, "PYTHONPATH": str(REPO_ROOT), **env},
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_packages_are_regular_packages_not_the_test_folders() -> None:
    for package in (activeusers, api, consumer):
        assert package.__file__ is not None, f"{package.__name__} resolved to a namespace package"
        assert Path(package.__file__).parent == REPO_ROOT / package.__name__


def test_a_missing_service_skips_its_tests_locally_and_says_so_in_one_line(tmp_path: Path) -> None:
    result = _pytest(tmp_path, TWO_NEED_REDIS, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 skipped" in result.stdout
    loud = [line for line in result.stdout.splitlines() if "SKIPPED (" in line]
    assert len(loud) == 1, result.stdout
    assert "2 tests SKIPPED (2 needing Redis): start the services with `python3 dev/stack up`" in loud[0]


def test_under_ci_a_missing_service_fails_its_tests(tmp_path: Path) -> None:
    result = _pytest(tmp_path, TWO_NEED_REDIS, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", CI="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 2 errors" in result.stdout
    assert "Redis unavailable" in result.stdout
    assert "SKIPPED (" not in result.stdout


def test_a_service_reached_through_getfixturevalue_without_the_marker_fails(tmp_path: Path, redis_url: str) -> None:
    source = """
import pytest

def test_unmarked(request):
    request.getfixturevalue("redis_url")

@pytest.mark.integration
def test_marked(request):
    request.getfixturevalue("redis_url")
"""
    result = _pytest(tmp_path, source, REDIS_URL=redis_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed, 1 error" in result.stdout
    assert "test_unmarked reached redis_url through request.getfixturevalue but is not marked integration" in (
        result.stdout
    )


def test_the_line_counts_the_skips_of_each_missing_service() -> None:
    reasons = [
        "Skipped: Redis unavailable: Redis at redis://127.0.0.1:1/0 does not answer",
        "Skipped: Kafka unavailable: Kafka at 127.0.0.1:1 does not answer",
        "Skipped: Kafka unavailable: Kafka at 127.0.0.1:1 does not answer",
        "Skipped: kcat is not installed",
    ]
    assert skipped_line(reasons) == (
        "3 tests SKIPPED (2 needing Kafka, 1 needing Redis): start the services with `python3 dev/stack up`"
    )
    assert skipped_line(["Skipped: kcat is not installed"]) is None
