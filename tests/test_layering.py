"""The packages' import arrows point one way: ``consumer`` and ``api`` use the core ``activeusers``, never the
reverse, and the two services do not import each other. Imports are read from the source (``ast``), so an
import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from activeusers.cli import COMMANDS_GROUP, build_parser
from tests.support.environment import REPO_ROOT

FORBIDDEN = {"activeusers": {"consumer", "api"}, "consumer": {"api"}, "api": {"consumer"}}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in one module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_it(package):
    modules = sorted((REPO_ROOT / package).rglob("*.py"))
    assert modules
    offenders = {
        str(module.relative_to(REPO_ROOT)): sorted(imported_packages(module) & FORBIDDEN[package]) for module in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_reader_sees_imports_anywhere_in_a_module(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import json\n\ndef f():\n    from api.cli import register\n    import consumer.loop as x\n")
    assert imported_packages(module) == {"json", "api", "consumer"}


def test_importing_the_core_cli_loads_neither_service():
    code = "import sys, activeusers.cli; print(sorted(m for m in sys.modules if m.startswith(('api', 'consumer'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "[]"


def test_the_services_register_their_subcommands_through_entry_points():
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"][COMMANDS_GROUP]
    assert declared == {"consumer": "consumer.cli:register", "api": "api.cli:register"}
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert set(subcommands) == {"consume", "replay", "reindex", "produce", "serve", "token"}
