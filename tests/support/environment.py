"""Where the tests run: the repository, whether CI demands hard failures, and the command-line tools needed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def require_tool(name: str) -> str:
    """The path of a command-line tool; a missing one fails the test under CI and skips it otherwise."""
    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install -y {name}; .ci/run installs it)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def in_ci() -> bool:
    """Whether env ``CI`` asks for hard failures instead of skips (a missing tool then fails the test)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
