"""The packages' import arrows point one way: ``consumer`` and ``api`` use the core ``activeusers``, never the
reverse, and the two services do not import each other; no modules import each other in a circle; the
packed-command transport is private to its few users. Imports are read from the source (``ast``), so an import
inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Collection, Mapping, Sequence
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
    assert set(subcommands) == {"consume", "replay", "reindex", "forget", "produce", "serve", "token"}


# The packed-command transport is private to the index's reader and writer and what sends for them: the API's
# coalescer (small reads of a turn together), reindex (its listing script), erasure (its scripts clear bits in
# every bucket, in rounds sized to stay short on Redis' thread) and the benchmark of the transport.
TRANSPORT = "activeusers.transport"
TRANSPORT_USERS = {
    "activeusers.reader",
    "activeusers.writer",
    "activeusers.coalescer",
    "activeusers.erasure",
    "consumer.reindex",
    "bench.routing",
}
# The packages whose modules may not import each other in a circle (bench's scripts import their siblings by
# their bare names: bench/ is on their path).
GRAPHED = ("activeusers", "consumer", "api", "bench")


def module_names(root: Path, packages: Sequence[str]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root`` by its dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_modules(name: str, path: Path, modules: Collection[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` imports, anywhere in it: ``from p import m`` counts as
    importing the module ``p.m`` when there is one, else ``p``. A script outside a package (bench's) has its folder
    on the path: a bare name there is its sibling."""
    folders = [""] if (path.parent / "__init__.py").exists() else ["", name.rsplit(".", 1)[0] + "."]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [[f"{node.module}.{alias.name}", node.module] for alias in node.names]
        else:
            continue
        for candidates in targets:
            known = [folder + c for c in candidates for folder in folders if folder + c in modules]
            found.update(known[:1])
    return found - {name}


def import_cycles(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of ``graph`` with more than one module, each once."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    cycles: list[set[str]] = []
    for module in sorted(graph):
        component = {other for other in reach[module] if module in reach[other]} | {module}
        if len(component) > 1 and component not in cycles:
            cycles.append(component)
    return cycles


def import_graph() -> dict[str, set[str]]:
    modules = module_names(REPO_ROOT, GRAPHED)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def test_no_modules_import_each_other_in_a_circle():
    assert import_cycles(import_graph()) == []


def test_the_cycle_finder_sees_circles_through_a_function_and_between_scripts(tmp_path):
    for folder in ("p", "s"):
        (tmp_path / folder).mkdir()
    (tmp_path / "p" / "__init__.py").write_text("")
    (tmp_path / "p" / "a.py").write_text("from p import b\n")
    (tmp_path / "p" / "b.py").write_text("def f():\n    from p.c import x\n")
    (tmp_path / "p" / "c.py").write_text("import p.a\nimport json\nimport b\n")
    (tmp_path / "p" / "d.py").write_text("from p import a\n")
    (tmp_path / "s" / "x.py").write_text("import y\n")
    (tmp_path / "s" / "y.py").write_text("from x import z\nfrom p.d import w\n")
    modules = module_names(tmp_path, ["p", "s"])
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert graph["p.c"] == {"p.a"} and graph["p.d"] == {"p.a"} and graph["s.y"] == {"s.x", "p.d"}
    assert import_cycles(graph) == [{"p.a", "p.b", "p.c"}, {"s.x", "s.y"}]


def test_only_the_reader_the_writer_and_their_senders_use_the_transport():
    graph = import_graph()
    assert TRANSPORT in graph
    assert {name for name, imported in graph.items() if TRANSPORT in imported} == TRANSPORT_USERS
