"""``active-users``'s entry point (:func:`activeusers.cli.main`): a retired variable in the environment is logged
once, as ``setting ignored`` with the variable and the reason, and the subcommand still runs."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from activeusers import cli
from activeusers.settings import RETIRED_VARIABLES, Settings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` configures JSON logging on the root logger; give pytest its handlers and level back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No retired variable, nor a log level, inherited from the environment the tests run in."""
    for name in (*RETIRED_VARIABLES, "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


def probe_parser(ran: list[Settings]) -> argparse.ArgumentParser:
    """A parser with one subcommand, ``probe``, that records the settings it was run with and exits 0."""
    parser = argparse.ArgumentParser(prog="active-users")
    commands = parser.add_subparsers(dest="command", required=True)

    def run(settings: Settings, args: argparse.Namespace) -> int:
        ran.append(settings)
        logging.getLogger("probe").info("probe ran")
        return 0

    commands.add_parser("probe").set_defaults(run=run)
    return parser


def test_a_retired_variable_is_logged_once_and_the_command_runs(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[Settings] = []
    clean_env.setattr(cli, "build_parser", lambda: probe_parser(ran))
    clean_env.setenv("MEMBER_RETENTION_DAYS", "45")
    clean_env.setenv("RETENTION_DAYS", "30")  # once an error beside MEMBER_RETENTION_DAYS=45: now ignored
    assert cli.main(["probe"]) == 0
    assert len(ran) == 1 and ran[0].retention_days == 30
    lines = json_lines(capsys.readouterr().err)
    ignored = [line for line in lines if line["event"] == "setting ignored"]
    assert len(ignored) == 1, lines
    assert ignored[0]["level"] == "warning"
    assert ignored[0]["logger"] == "activeusers.cli"
    assert ignored[0]["variable"] == "MEMBER_RETENTION_DAYS"
    assert ignored[0]["reason"] == RETIRED_VARIABLES["MEMBER_RETENTION_DAYS"]
    # said before the command starts, and the command's own logging still works
    assert [line["event"] for line in lines].index("setting ignored") < [line["event"] for line in lines].index(
        "probe ran"
    )


@pytest.mark.parametrize("raw", [None, ""])
def test_nothing_is_logged_without_a_retired_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raw: str | None
) -> None:
    ran: list[Settings] = []
    clean_env.setattr(cli, "build_parser", lambda: probe_parser(ran))
    if raw is not None:
        clean_env.setenv("MEMBER_RETENTION_DAYS", raw)  # empty: unset
    assert cli.main(["probe"]) == 0
    assert len(ran) == 1
    lines = json_lines(capsys.readouterr().err)
    assert [line["event"] for line in lines] == ["probe ran"]


def test_each_retired_variable_is_logged_once(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    retired = {"MEMBER_RETENTION_DAYS": "old reason", "SOME_OLD_SETTING": "another reason"}
    clean_env.setattr("activeusers.settings.RETIRED_VARIABLES", retired)
    clean_env.setattr(cli, "build_parser", lambda: probe_parser([]))
    for name in retired:
        clean_env.setenv(name, "1")
    assert cli.main(["probe"]) == 0
    ignored = [line for line in json_lines(capsys.readouterr().err) if line["event"] == "setting ignored"]
    assert sorted((line["variable"], line["reason"]) for line in ignored) == sorted(retired.items())


def test_a_real_subcommand_starts_with_a_retired_variable_set(
    redis_url: str, redis_prefix: str, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("REDIS_URL", redis_url)
    clean_env.setenv("REDIS_KEY_PREFIX", redis_prefix)
    clean_env.delenv("REDIS_CLUSTER", raising=False)
    clean_env.setenv("MEMBER_RETENTION_DAYS", "45")
    assert cli.main(["token", "list"]) == 0  # reads this prefix's (empty) token hash on the real Redis
    out, err = capsys.readouterr()
    assert out.split() == ["ID", "USER", "PERMISSIONS", "CREATED"]
    ignored = [line for line in json_lines(err) if line["event"] == "setting ignored"]
    assert [line["variable"] for line in ignored] == ["MEMBER_RETENTION_DAYS"]
