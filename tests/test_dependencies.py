"""The declared dependencies, their floors and the tested versions agree with each other.

``constraints/floors.txt`` is exactly the ``>=`` bound of every runtime dependency (``dev/floors`` installs it
and runs the unit tests, so a floor cannot claim more than it delivers); ``constraints/tested.txt`` pins a
version inside every declared range (``dev/venv`` and the Dockerfile install with it).
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.environment import REPO_ROOT

PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
TEST = [Requirement(r) for r in PROJECT["optional-dependencies"]["test"]]


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by canonical name."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"{path.name}: {raw!r} is not name==version"
            found[canonicalize_name(name)] = pinned
    return found


def lower_bound(requirement: Requirement) -> str:
    bounds = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    assert len(bounds) == 1, f"{requirement} needs exactly one >= floor"
    return bounds[0]


def test_the_floors_file_is_exactly_the_declared_floors():
    declared = {canonicalize_name(r.name): lower_bound(r) for r in RUNTIME}
    assert pins(REPO_ROOT / "constraints" / "floors.txt") == declared


def test_hiredis_is_declared_directly():
    # activeusers/connections.py imports hiredis itself (pack_command); an extra of redis-py is not a promise.
    assert "hiredis" in {canonicalize_name(r.name) for r in RUNTIME}


def test_the_tested_versions_lie_inside_every_declared_range():
    tested = pins(REPO_ROOT / "constraints" / "tested.txt")
    for requirement in [*RUNTIME, *TEST]:
        name = canonicalize_name(requirement.name)
        assert name in tested, f"{name} has no tested version"
        assert requirement.specifier.contains(tested[name], prereleases=True), (requirement, tested[name])
    assert "active-users" not in tested


def test_the_development_environment_runs_the_tested_versions():
    tested = pins(REPO_ROOT / "constraints" / "tested.txt")
    installed = {}
    for name in tested:
        try:
            installed[name] = version(name)
        except PackageNotFoundError:
            installed[name] = None
    assert installed == tested, "run dev/venv (it installs with constraints/tested.txt)"
