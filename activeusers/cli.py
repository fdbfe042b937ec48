"""The ``active-users`` command line: one entry point whose subcommands the service packages provide."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from activeusers.errors import ActiveUsersError
from activeusers.logs import configure
from activeusers.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand that exists."""
    from api.cli import register as register_api
    from consumer.cli import register as register_consumer

    parser = argparse.ArgumentParser(
        prog="active-users",
        description="Streaming active-users service: Kafka events in, exact daily active users out. "
        "Settings come from environment variables (see the README's configuration table).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_consumer(commands)
    register_api(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand with settings read from the environment; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        configure(settings.log_level)
        code: int = args.run(settings, args)
    except ActiveUsersError as exc:
        print(f"active-users {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
