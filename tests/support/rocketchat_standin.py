"""A stand-in Rocket.Chat: the two endpoints the API asks, answering as Rocket.Chat's source does.

Rocket.Chat itself (a Meteor build and MongoDB) cannot be installed from the package registries the project uses.
The shapes below follow RocketChat/Rocket.Chat:

- ``GET /api/v1/me``: apps/meteor/app/api/server/v1/misc.ts (``API.v1.success(await getUserInfo(user))``: the
  user's fields, ``_id``, ``username``, ``status`` (the presence, e.g. ``online``), ``active``, ``roles`` (role
  ids), ``settings``..., plus ``success: true``).
- A missing or unknown token on an ``authRequired`` route: apps/meteor/app/api/server/ApiClass.ts
  (``api.unauthorized('You must be logged in to do this.')`` = 401 ``{success: false, error}``; before 8.0
  (``shouldBreakInVersion('8.0.0')``) also ``status: 'error'`` and ``message``). The user is found by ``_id`` and
  the hashed token together (``authenticatedRoute``), so another user's token is the same 401.
- ``GET /api/v1/permissions.listAll``: apps/meteor/app/api/server/v1/permissions.ts (``{update, remove,
  success}``; ``updatedSince`` not a date: ``API.v1.failure`` 400 with ``errorType``; without it every permission
  in ``update`` and ``remove: []``); a permission is ``{_id, roles, _updatedAt, ...}`` and a user has it when one
  of its roles is in ``roles`` (apps/meteor/server/services/authorization/service.ts, ``Permissions.findOne({_id,
  roles: {$in: roles}})``).

Dates are written as JSON writes a JavaScript ``Date`` (``2026-03-15T12:00:00.000Z``).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

LOGIN_REQUIRED = "You must be logged in to do this."
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def js_date(moment: datetime) -> str:
    """``moment`` as ``JSON.stringify(new Date(...))`` writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class StandIn:
    """The server's state: users by (id, token), permissions, and what it was asked."""

    pre_8_0: bool = True  # 401 bodies with the legacy status/message pair (Rocket.Chat before 8.0)
    delay_s: float = 0.0
    fail_status: int | None = None  # answer every request with this status (a 5xx: a failing server)
    users: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    permissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    trash: list[dict[str, Any]] = field(default_factory=list)
    me_calls: int = 0  # with a token
    probes: int = 0  # without one (the API's start and readiness checks)
    list_calls: list[str | None] = field(default_factory=list)
    _ticks: int = 0

    def add_user(self, user_id: str, token: str, roles: list[str]) -> None:
        """A user whose login (or personal access) token is ``token``."""
        self.users[(user_id, token)] = {
            "_id": user_id,
            "username": user_id.lower(),
            "name": user_id,
            "status": "online",
            "statusConnection": "online",
            "utcOffset": 0,
            "active": True,
            "roles": roles,
            "settings": {"preferences": {}},
            "avatarETag": None,
        }

    def revoke(self, user_id: str, token: str) -> None:
        """Log the token out."""
        del self.users[(user_id, token)]

    def set_permission(self, name: str, roles: list[str]) -> None:
        """Create or change a permission; its ``_updatedAt`` moves forward."""
        self.permissions[name] = {"_id": name, "roles": roles, "_updatedAt": self._now(), "level": "permission"}

    def remove_permission(self, name: str) -> None:
        """Delete a permission (it goes to the trash, as Rocket.Chat's models do)."""
        removed = self.permissions.pop(name)
        self.trash.append(removed | {"_deletedAt": self._now(), "__collection__": "rocketchat_permissions"})

    def _now(self) -> str:
        self._ticks += 1
        return js_date(EPOCH + timedelta(seconds=self._ticks))

    def app(self) -> web.Application:
        """The aiohttp application serving the two endpoints."""
        app = web.Application()
        app.router.add_get("/api/v1/me", self._me)
        app.router.add_get("/api/v1/permissions.listAll", self._list_all)
        return app

    async def _refusal(self, request: web.Request) -> web.Response | None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status is not None:
            return web.json_response({"success": False, "error": "Internal server error"}, status=self.fail_status)
        user = self.users.get((request.headers.get("X-User-Id", ""), request.headers.get("X-Auth-Token", "")))
        if user is not None:
            return None
        body: dict[str, Any] = {"success": False, "error": LOGIN_REQUIRED}
        if self.pre_8_0:
            body |= {"status": "error", "message": LOGIN_REQUIRED}
        return web.json_response(body, status=401)

    async def _me(self, request: web.Request) -> web.Response:
        if "X-Auth-Token" in request.headers:
            self.me_calls += 1
        else:
            self.probes += 1
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        user = self.users[(request.headers["X-User-Id"], request.headers["X-Auth-Token"])]
        return web.json_response(user | {"success": True})

    async def _list_all(self, request: web.Request) -> web.Response:
        since = request.query.get("updatedSince")
        self.list_calls.append(since)
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        if not since:
            return web.json_response({"update": list(self.permissions.values()), "remove": [], "success": True})
        try:
            after = datetime.fromisoformat(since)
        except ValueError:
            error = 'The "updatedSince" query parameter must be a valid date.'
            body = {"success": False, "error": error, "errorType": "error-roomId-param-invalid"}
            return web.json_response(body, status=400)
        update = [p for p in self.permissions.values() if datetime.fromisoformat(p["_updatedAt"]) > after]
        remove = [p for p in self.trash if datetime.fromisoformat(p["_deletedAt"]) > after]
        return web.json_response({"update": update, "remove": remove, "success": True})


async def serve(stand_in: StandIn, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
    """Start ``stand_in`` on 127.0.0.1 at a free port; its runner (``await runner.cleanup()``) and base URL."""
    runner = web.AppRunner(stand_in.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"{'https' if tls else 'http'}://127.0.0.1:{port}"


@contextmanager
def served_in_thread(stand_in: StandIn) -> Iterator[str]:
    """``stand_in`` served from its own event loop in a thread (for code that does not run one); its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, url = asyncio.run_coroutine_threadsafe(serve(stand_in), loop).result(10)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
