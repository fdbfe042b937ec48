"""The API's subcommands of ``active-users``: ``serve`` and ``token create|list|revoke``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from activeusers.connections import async_redis_client
from activeusers.events import MAX_USER_ID_CHARS
from activeusers.isotime import format_iso
from activeusers.keys import KeySchema
from activeusers.redischeck import check_redis
from activeusers.settings import Settings
from api.auth import PERMISSIONS
from api.server import serve
from api.tokens import TokenStore

T = TypeVar("T")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` and ``token`` to the ``active-users`` command line."""
    serve_cmd = commands.add_parser(
        "serve", help="run the query API", description="Serve the HTTP API on API_HOST:API_PORT until SIGTERM."
    )
    serve_cmd.set_defaults(run=run_serve)

    token = commands.add_parser(
        "token",
        help="manage API tokens",
        description="Create, list and revoke API tokens. Redis stores only base64(SHA-256(token)).",
    )
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="create a token and print it once", description="Print a new random token on stdout."
    )
    create.add_argument("--user-id", required=True, type=_user_id, help="the user the token authenticates")
    create.add_argument(
        "--permission",
        action="append",
        choices=PERMISSIONS,
        default=[],
        help="grant a permission (repeatable); without one the token authenticates but may read nothing",
    )
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="list tokens (ids, users, permissions, creation times)")
    listing.set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="revoke one token by id, or every token of a user")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="the token id shown by 'token list'")
    which.add_argument("--user-id", type=_user_id, help="revoke every token of this user")
    revoke.set_defaults(run=run_revoke)


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    """``active-users serve``: a misconfigured Redis connection stops it at once with one line."""
    check_redis(settings)
    return serve(settings)


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    """``active-users token create``: the token on stdout (once), what was created on stderr."""
    permissions = tuple(args.permission)
    token, record = _with_store(settings, lambda store: store.create(args.user_id, permissions, _now_ms()))
    print(token)
    granted = ",".join(record.permissions) or "none"
    print(f"created token {record.id} for user {record.user_id} (permissions: {granted})", file=sys.stderr)
    return 0


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    """``active-users token list``: one line per token, oldest first; never the tokens themselves."""
    records = _with_store(settings, lambda store: store.all())
    rows = [("ID", "USER", "PERMISSIONS", "CREATED")]
    rows += [(r.id, r.user_id, ",".join(r.permissions) or "-", format_iso(r.created_ms)) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])
    return 0


def run_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """``active-users token revoke ID`` or ``--user-id U``; exit 1 when nothing matched."""
    if args.user_id is not None:
        removed = _with_store(settings, lambda store: store.revoke_user(args.user_id))
        print(f"revoked {removed} token(s) of user {args.user_id}", file=sys.stderr)
        return 0 if removed else 1
    if _with_store(settings, lambda store: store.revoke(args.id)):
        print(f"revoked token {args.id}", file=sys.stderr)
        return 0
    print(f"no token with id {args.id}", file=sys.stderr)
    return 1


def _with_store(settings: Settings, action: Callable[[TokenStore], Awaitable[T]]) -> T:
    check_redis(settings)

    async def run() -> T:
        client = async_redis_client(settings)
        try:
            return await action(TokenStore(client, KeySchema.of(settings)))
        finally:
            await client.aclose()

    return asyncio.run(run())


def _user_id(value: str) -> str:
    if not value or len(value) > MAX_USER_ID_CHARS:
        raise argparse.ArgumentTypeError(f"a user id has 1..{MAX_USER_ID_CHARS} characters")
    return value


def _now_ms() -> int:
    return int(time.time() * 1000)
