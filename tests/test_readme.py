"""The README and the docs stay true: the configuration table (docs/operations.md) lists exactly the settings, the
README's first commands exist, and every relative link of the README, BENCHMARKS.md and docs/ leads somewhere."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from activeusers.envvalues import parse_duration
from activeusers.settings import Settings
from tests.support.environment import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
OPERATIONS = (REPO_ROOT / "docs" / "operations.md").read_text()
PAGES = sorted([REPO_ROOT / "README.md", REPO_ROOT / "BENCHMARKS.md", *(REPO_ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def table_rows() -> dict[str, str]:
    section = OPERATIONS.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", section, flags=re.MULTILINE))


def test_configuration_table_lists_every_setting_with_its_default():
    rows = table_rows()
    defaults = Settings()
    expected = {}
    for f in fields(Settings):
        name = f.name[:-2] if f.name.endswith("_s") else f.name
        expected[name.upper()] = getattr(defaults, f.name)
    assert set(rows) == set(expected)
    for name, shown in rows.items():
        value = expected[name]
        if isinstance(value, bool):
            assert shown == str(value).lower(), name
        elif isinstance(value, float):
            assert parse_duration(shown) == value, name
        else:
            assert shown == str(value), name


def test_the_two_commands_come_first_and_exist():
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split()[0] for line in first_block.strip().splitlines()]
    assert commands == ["dev/run", "dev/test"]
    for command in commands:
        assert (REPO_ROOT / command).stat().st_mode & 0o111


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page's headings (outside code blocks)."""
    found, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path):
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{target}: no such heading"
