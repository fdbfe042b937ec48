"""Who is calling and whether they may: token authentication, the permission check and the rate limit.

The order is Rocket.Chat's: authentication (401), then permission (403), then rate limit (429); query validation
(400) comes after, in the handlers.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from activeusers.coalescer import Pending
from api.errors import Forbidden, RateLimited, Unauthorized
from api.responses import EXTRA_HEADERS
from api.state import LIMITER, TOKENS, now_ms
from api.tokens import TokenRecord, TokenStore

VIEW_ENGAGEMENT_DASHBOARD: Final = "view-engagement-dashboard"
# Every permission a token can be granted; the CLI refuses others so that a typo cannot create a useless token.
PERMISSIONS: Final = (VIEW_ENGAGEMENT_DASHBOARD,)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    permissions: tuple[str, ...]


def _utf8(text: str) -> bytes:
    # aiohttp decodes header bytes with surrogateescape; this restores them exactly.
    return text.encode("utf-8", "surrogateescape")


async def authenticate(user_id: str | None, token: str | None, tokens: TokenStore) -> Principal:
    """The caller owning ``token`` if it belongs to ``user_id``; otherwise :class:`Unauthorized`.

    The token is found by its SHA-256 hash, so the lookup's timing depends on a value the caller cannot steer
    byte by byte; the user ids are compared in constant time, also when the token is unknown, so that a
    mismatched user and an unknown token take the same path.
    """
    return await _authenticated(user_id, tokens.lookup_soon(token) if user_id and token else None)


async def _authenticated(user_id: str | None, lookup: Pending[TokenRecord | None] | None) -> Principal:
    if not user_id or lookup is None:
        raise Unauthorized
    record = await lookup
    stored = record.user_id if record is not None else ""
    if not hmac.compare_digest(_utf8(stored), _utf8(user_id)) or record is None:
        raise Unauthorized
    return Principal(record.user_id, record.permissions)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A request's user id and the lookup of its token, queued (:func:`credentials`) and not yet awaited."""

    user_id: str | None
    lookup: Pending[TokenRecord | None] | None


def credentials(request: web.Request) -> Credentials:
    """The request's ``X-User-Id`` and the lookup of its ``X-Auth-Token``, queued now in this turn's batch of
    small reads, so that the request's first read of the index can go to Redis with it (:func:`guard`)."""
    user_id, token = _single(request, "X-User-Id"), _single(request, "X-Auth-Token")
    return Credentials(user_id, request.app[TOKENS].lookup_soon(token) if user_id and token else None)


def _single(request: web.Request, name: str) -> str | None:
    """The header's value when it is sent exactly once; a repeated one counts as absent.

    Node (so Rocket.Chat) joins repeated headers with ", ", which never matches a token or user id; taking the
    first copy instead would authenticate a request that a proxy reading the last copy judged differently.
    """
    values = request.headers.getall(name, [])
    return values[0] if len(values) == 1 else None


async def guard(
    request: web.Request, permission: str = VIEW_ENGAGEMENT_DASHBOARD, sent: Credentials | None = None
) -> Principal:
    """Authenticate the request (with the credentials ``sent`` queued before, else its own), require
    ``permission`` and count it against the rate limit, in that order."""
    found = sent if sent is not None else credentials(request)
    principal = await _authenticated(found.user_id, found.lookup)
    if permission not in principal.permissions:
        raise Forbidden
    limiter = request.app[LIMITER]
    if limiter.enabled:
        decision = await limiter.hit(principal.user_id, now_ms(request.app))
        request[EXTRA_HEADERS] = decision.headers()
        if not decision.allowed:
            raise RateLimited(decision.wait_s)
    return principal
