"""Rocket.Chat as the second judge of tokens: :class:`RocketChat`, the client of ``ROCKETCHAT_URL``.

A token our store does not know is shown to Rocket.Chat with the caller's own headers: ``GET /api/v1/me`` says
whose it is and the user's role ids, ``GET /api/v1/permissions.listAll`` which roles hold each permission. The user
has a permission when one of its roles holds it. Answers are kept for ``ROCKETCHAT_AUTH_TTL`` per user id and
token (a refusal for :data:`REFUSAL_TTL_S` at most), the permission map is refreshed as often with its
``updatedSince`` parameter, and concurrent requests with the same unknown token share one ``me`` call. A Rocket.Chat
that cannot answer (unreachable, too slow, a 5xx, anything but 200 or 401) refuses with
:class:`~api.errors.RocketChatUnreachable`, never lets a request through. Tokens never reach a log.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

import aiohttp
import orjson

from activeusers.settings import Settings
from api.errors import RocketChatUnreachable, Unauthorized
from api.tokens import hash_token

log = logging.getLogger(__name__)

ME: Final = "/api/v1/me"
LIST_ALL: Final = "/api/v1/permissions.listAll"
# Long enough to spare Rocket.Chat a burst of retries with a bad token; short enough that a user who just
# logged in again is not kept out.
REFUSAL_TTL_S: Final = 2.0
# Answers kept per process (by user id and token hash): cleared when full.
MAX_ANSWERS: Final = 10_000
# A Rocket.Chat that is down would otherwise log once per request.
LOG_EVERY_S: Final = 10.0

Roles = frozenset[str]
_Key = tuple[str, str]


class RocketChat:
    """Checks tokens against one Rocket.Chat server for the permissions in ``mapped`` (and no others)."""

    def __init__(
        self, settings: Settings, mapped: Collection[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._base = settings.rocketchat_url.rstrip("/")
        self._ca_file = settings.rocketchat_ca_file or None
        self._timeout = aiohttp.ClientTimeout(total=settings.rocketchat_timeout_s)
        self._ttl = settings.rocketchat_auth_ttl_s
        self._mapped = tuple(mapped)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._answers: dict[_Key, tuple[float, Roles | None]] = {}
        self._asking: dict[_Key, asyncio.Future[Roles | None]] = {}
        self._holders: dict[str, Roles] = {}
        self._map_expires = float("-inf")
        self._since: str | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self._logged = float("-inf")

    async def open(self) -> None:
        """Open the HTTP client (TLS verified, with ``ROCKETCHAT_CA_FILE`` when set); needs a running loop."""
        context = ssl.create_default_context(cafile=self._ca_file)
        connector = aiohttp.TCPConnector(ssl=context)
        self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()

    async def permissions(self, user_id: str, token: str) -> tuple[str, ...]:
        """The mapped permissions the Rocket.Chat user owning ``token`` has; :class:`Unauthorized` when Rocket.Chat
        says the token is not ``user_id``'s, :class:`RocketChatUnreachable` when it cannot say."""
        key = (user_id, hash_token(token))
        kept = self._answers.get(key)
        if kept is not None and kept[0] > self._clock():
            roles = kept[1]
        else:
            roles = await self._shared(key, user_id, token)
        if roles is None:
            raise Unauthorized
        holders = await self._permission_map({"X-User-Id": user_id, "X-Auth-Token": token})
        return tuple(name for name in self._mapped if roles & holders.get(name, frozenset()))

    async def unreachable(self) -> str | None:
        """Why Rocket.Chat cannot be asked now (``None`` when it answers): for the readiness check and the start."""
        try:
            await self._get(ME, {})
        except RocketChatUnreachable as exc:
            return exc.reason
        return None

    async def _shared(self, key: _Key, user_id: str, token: str) -> Roles | None:
        """One ``me`` call per key at a time: concurrent requests with the same new token wait for the first."""
        asking = self._asking.get(key)
        if asking is None:
            asking = self._asking[key] = asyncio.ensure_future(self._ask_me(key, user_id, token))
            asking.add_done_callback(lambda _: self._asking.pop(key, None))
        # shield: a caller that goes away does not cancel the call the others wait for.
        return await asyncio.shield(asking)

    async def _ask_me(self, key: _Key, user_id: str, token: str) -> Roles | None:
        status, body = await self._get(ME, {"X-User-Id": user_id, "X-Auth-Token": token})
        roles: Roles | None = None
        if status == 200 and isinstance(body, dict) and body.get("_id") == user_id:
            found = body.get("roles")
            roles = frozenset(role for role in found if isinstance(role, str)) if isinstance(found, list) else Roles()
        if len(self._answers) >= MAX_ANSWERS:
            self._answers.clear()
        kept_for = self._ttl if roles is not None else min(self._ttl, REFUSAL_TTL_S)
        self._answers[key] = (self._clock() + kept_for, roles)
        return roles

    async def _permission_map(self, headers: Mapping[str, str]) -> dict[str, Roles]:
        """The roles holding each mapped permission, refreshed (with the caller's headers) once older than the TTL."""
        if self._map_expires <= self._clock():
            if self._refreshing is None:
                self._refreshing = asyncio.ensure_future(self._refresh(headers))
                self._refreshing.add_done_callback(self._refreshed)
            await asyncio.shield(self._refreshing)
        return self._holders

    def _refreshed(self, _: asyncio.Future[None]) -> None:
        self._refreshing = None

    async def _refresh(self, headers: Mapping[str, str]) -> None:
        asked = self._clock()
        status, body = await self._get(LIST_ALL, headers, {"updatedSince": self._since} if self._since else None)
        if status == 401:  # the token was revoked between the two calls
            raise Unauthorized
        if not isinstance(body, dict):
            raise self._failed(LIST_ALL, "Rocket.Chat's permission list is not a JSON object")
        holders = dict(self._holders)
        stamps = [self._since or ""]
        for change, records in (("update", body.get("update")), ("remove", body.get("remove"))):
            for record in records if isinstance(records, list) else ():
                if not isinstance(record, dict):
                    continue
                stamps.extend(str(record[k]) for k in ("_updatedAt", "_deletedAt") if isinstance(record.get(k), str))
                name, roles = record.get("_id"), record.get("roles")
                if name in self._mapped and change == "remove":
                    holders.pop(name, None)
                elif name in self._mapped and isinstance(roles, list):
                    holders[name] = frozenset(role for role in roles if isinstance(role, str))
        self._holders, self._since = holders, max(stamps) or None
        self._map_expires = asked + self._ttl

    async def _get(
        self, path: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """The status (200 or 401) and JSON body of a GET; any other answer or none: :class:`RocketChatUnreachable`."""
        if self._session is None:
            raise RuntimeError("RocketChat.open() was not awaited")
        try:
            async with self._session.get(
                self._base + path, headers=headers, params=params, allow_redirects=False
            ) as response:
                if response.status not in (200, 401):
                    raise self._failed(path, f"Rocket.Chat answered {response.status}")
                return response.status, orjson.loads(await response.read()) if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # The exception's text names the host and the failure, never a request header.
            raise self._failed(path, f"{type(exc).__name__}: {exc}".removesuffix(": ")) from None

    def _failed(self, path: str, reason: str) -> RocketChatUnreachable:
        now = self._clock()
        if now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.warning("Rocket.Chat could not be reached", extra={"path": path, "error": reason})
        return RocketChatUnreachable(reason)
