"""The ``active-users`` command line: one entry point whose subcommands the service packages provide.

The core does not import the packages built on it: each declares a ``register(commands)`` function under the
``active_users.commands`` entry-point group (``pyproject.toml``), and :func:`build_parser` loads whatever the
installed distribution declares.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Final

from activeusers.errors import ActiveUsersError
from activeusers.logs import configure
from activeusers.settings import Settings, retired_variables

COMMANDS_GROUP: Final = "active_users.commands"
log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand the installed packages register."""
    parser = argparse.ArgumentParser(
        prog="active-users",
        description="Streaming active-users service: Kafka events in, exact daily active users out. "
        "Settings come from environment variables (see the configuration table of docs/operations.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registrars = sorted(entry_points(group=COMMANDS_GROUP), key=lambda point: point.name)
    if not registrars:
        parser.error(f"no subcommands are installed (entry points {COMMANDS_GROUP!r}): install the package")
    for point in registrars:
        point.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand with settings read from the environment; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        configure(settings.log_level)
        for name, why in retired_variables(os.environ).items():
            log.warning("setting ignored", extra={"variable": name, "reason": why})
        code: int = args.run(settings, args)
    except ActiveUsersError as exc:
        print(f"active-users {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
