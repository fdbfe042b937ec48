"""The code stays easy to find one's way in: no production module over 400 lines, no function over 60 lines
outside data tables (read from the source with ``ast``, so a new long function fails here, not in review)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

from tests.support.environment import REPO_ROOT

PACKAGES: Final = ("activeusers", "consumer", "api")
# Where the function limit holds too: the production packages and the tools that start and measure them.
CODE: Final = (*PACKAGES, "dev/teststack", "bench")
MAX_MODULE_LINES: Final = 400
MAX_FUNCTION_LINES: Final = 60
# Functions that are data, not logic: one literal document built in one expression.
DATA_TABLES: Final = {"api/openapi.py::_operations"}


def _modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (REPO_ROOT / package).rglob("*.py"))


def long_functions(path: Path, limit: int, root: Path = REPO_ROOT) -> list[str]:
    """``module::function`` of every function (methods and nested ones too) of more than ``limit`` lines."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = path.relative_to(root).as_posix()
    return [
        f"{name}::{node.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > limit
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_production_module_is_over_400_lines(package: str) -> None:
    modules = _modules(package)
    assert modules
    sizes = {path.relative_to(REPO_ROOT).as_posix(): len(path.read_text().splitlines()) for path in modules}
    assert {name: size for name, size in sizes.items() if size > MAX_MODULE_LINES} == {}


@pytest.mark.parametrize("package", CODE)
def test_no_function_is_over_60_lines_outside_data_tables(package: str) -> None:
    found = [name for path in _modules(package) for name in long_functions(path, MAX_FUNCTION_LINES)]
    assert sorted(set(found) - DATA_TABLES) == []


def test_the_data_tables_named_exist_and_are_long() -> None:
    found = {name for path in _modules(*CODE) for name in long_functions(path, MAX_FUNCTION_LINES)}
    assert found >= DATA_TABLES


def test_the_function_reader_counts_nested_and_async_functions(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    body = "\n".join(f"        x{i} = {i}" for i in range(60))
    module.write_text(f"async def outer():\n    def inner():\n{body}\n    return 1\n\n\ndef short():\n    pass\n")
    assert long_functions(module, 60, tmp_path) == ["probe.py::outer", "probe.py::inner"]
    assert long_functions(module, 62, tmp_path) == ["probe.py::outer"]
