"""Who is calling and whether they may: token authentication, the permission check and the rate limit.

A token is ours when our store knows it; otherwise, with ``ROCKETCHAT_URL`` set, Rocket.Chat judges it
(:mod:`api.rocketchat`), for ``view-engagement-dashboard`` only. The order is Rocket.Chat's: authentication (401),
then permission (403), then rate limit (429); query validation (400) comes after, in the handlers.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from multidict import CIMultiDictProxy

from activeusers.coalescer import Pending
from api.errors import Forbidden, RateLimited, Unauthorized
from api.ratelimit import RateLimiter
from api.rocketchat import RocketChat
from api.tokens import TokenRecord, TokenStore

VIEW_ENGAGEMENT_DASHBOARD: Final = "view-engagement-dashboard"
# Erasing users (POST .../forget): only tokens created with it have it.
FORGET_USERS: Final = "forget-users"
# Every permission a token can be granted; the CLI refuses others so that a typo cannot create a useless token.
PERMISSIONS: Final = (VIEW_ENGAGEMENT_DASHBOARD, FORGET_USERS)
# The permissions a Rocket.Chat role can give: the engagement dashboard's, never one of our own.
ROCKETCHAT_PERMISSIONS: Final = (VIEW_ENGAGEMENT_DASHBOARD,)
# Who vouched for a caller, in the X-Auth-Source header of every admitted answer (the dashboard shows it).
OURS: Final = "active-users"
ROCKETCHAT: Final = "rocketchat"
AUTH_SOURCE: Final = "X-Auth-Source"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    permissions: tuple[str, ...]
    source: str = OURS


def _utf8(text: str) -> bytes:
    # aiohttp decodes header bytes with surrogateescape; this restores them exactly.
    return text.encode("utf-8", "surrogateescape")


async def authenticate(user_id: str | None, token: str | None, tokens: TokenStore) -> Principal:
    """The caller owning ``token`` if it belongs to ``user_id``; otherwise :class:`Unauthorized`.

    The token is found by its SHA-256 hash, so the lookup's timing depends on a value the caller cannot steer
    byte by byte; the user ids are compared in constant time, also when the token is unknown, so that a
    mismatched user and an unknown token take the same path.
    """
    if not user_id or not token:
        raise Unauthorized
    return _ours(user_id, await tokens.lookup_soon(token))


def _ours(user_id: str, record: TokenRecord | None) -> Principal:
    stored = record.user_id if record is not None else ""
    if not hmac.compare_digest(_utf8(stored), _utf8(user_id)) or record is None:
        raise Unauthorized
    return Principal(record.user_id, record.permissions)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A request's user id and token, and the lookup of the token in our store, queued
    (:meth:`Access.credentials`) and not yet awaited."""

    user_id: str | None
    token: str | None = field(repr=False)
    lookup: Pending[TokenRecord | None] | None


@dataclass(frozen=True, slots=True)
class Granted:
    """An admitted caller and the rate-limit headers every answer to its request carries."""

    principal: Principal
    headers: dict[str, str]


class Access:
    """Who may call the data endpoints, for one process: tokens (ours, then ``rocketchat``'s when given),
    permissions and the rate limit, on ``clock``."""

    def __init__(
        self,
        tokens: TokenStore,
        limiter: RateLimiter,
        clock: Callable[[], float],
        rocketchat: RocketChat | None = None,
    ) -> None:
        self.tokens = tokens
        self.rocketchat = rocketchat
        self._limiter = limiter
        self._clock = clock

    def credentials(self, headers: CIMultiDictProxy[str]) -> Credentials:
        """The request's ``X-User-Id`` and the lookup of its ``X-Auth-Token``, queued now in this turn's batch of
        small reads, so that the request's first read of the index can go to Redis with it (:meth:`admit`)."""
        user_id, token = _single(headers, "X-User-Id"), _single(headers, "X-Auth-Token")
        return Credentials(user_id, token, self.tokens.lookup_soon(token) if user_id and token else None)

    async def admit(self, sent: Credentials, permission: str = VIEW_ENGAGEMENT_DASHBOARD) -> Granted:
        """Authenticate the caller of the credentials ``sent``, require ``permission`` and count the request
        against the rate limit, in that order (:class:`Unauthorized`, :class:`Forbidden`,
        :class:`RateLimited`)."""
        principal = await self._principal(sent)
        if permission not in principal.permissions:
            raise Forbidden
        source = {AUTH_SOURCE: principal.source}
        if not self._limiter.enabled:
            return Granted(principal, source)
        decision = await self._limiter.hit(principal.user_id, int(self._clock() * 1000))
        if not decision.allowed:
            raise RateLimited(decision.wait_s, decision.headers())
        return Granted(principal, decision.headers() | source)

    async def _principal(self, sent: Credentials) -> Principal:
        """Ours when our store knows the token; else Rocket.Chat's verdict, when there is a Rocket.Chat."""
        if not sent.user_id or not sent.token or sent.lookup is None:
            raise Unauthorized
        record = await sent.lookup
        if record is None and self.rocketchat is not None:
            permissions = await self.rocketchat.permissions(sent.user_id, sent.token)
            return Principal(sent.user_id, permissions, ROCKETCHAT)
        return _ours(sent.user_id, record)


def _single(headers: CIMultiDictProxy[str], name: str) -> str | None:
    """The header's value when it is sent exactly once; a repeated one counts as absent.

    Node (so Rocket.Chat) joins repeated headers with ", ", which never matches a token or user id; taking the
    first copy instead would authenticate a request that a proxy reading the last copy judged differently.
    """
    values = headers.getall(name, [])
    return values[0] if len(values) == 1 else None
