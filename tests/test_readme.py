"""The README stays true: its configuration table lists exactly the settings, its first commands exist."""

from __future__ import annotations

import re
from dataclasses import fields

from activeusers.settings import Settings, parse_duration
from tests.support.environment import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def table_rows() -> dict[str, str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
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
