"""``GET /healthz`` (the process answers) and ``GET /readyz`` (Redis answers and a consumer is alive; whether
Rocket.Chat answers, with ``ROCKETCHAT_URL`` set)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from activeusers.errors import StoreUnavailable
from api.responses import json_response
from api.rocketchat import RocketChat
from api.state import ACCESS, ACTIVITY

# Bounds what a Redis error message adds to a public answer.
_ERROR_CHARS = 200


async def healthz(request: web.Request) -> web.Response:
    """Always OK while the process serves requests."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis answers and the freshest consumer heartbeat is younger than ``CONSUMER_STALE``.

    With ``ROCKETCHAT_URL`` set, ``checks.rocketchat`` says whether Rocket.Chat answers, without deciding the
    status: every replica shares that Rocket.Chat, and our own tokens work without it.
    """
    activity, rocketchat = request.app[ACTIVITY], request.app[ACCESS].rocketchat
    redis: dict[str, Any] = {"ok": True, "error": None}
    consumer: dict[str, Any] = {"ok": False, "ageSeconds": None, "members": 0}
    asked = asyncio.ensure_future(_rocketchat_check(rocketchat)) if rocketchat is not None else None
    try:
        health = await activity.consumer_health()
    except StoreUnavailable as exc:
        redis = {"ok": False, "error": str(exc)[:_ERROR_CHARS]}
    else:
        consumer["members"] = health.members
        if health.age_s is not None:
            consumer["ageSeconds"] = round(health.age_s, 3)
            consumer["ok"] = health.age_s < activity.settings.consumer_stale_s
    ready = redis["ok"] and consumer["ok"]
    checks = {"redis": redis, "consumer": consumer} | ({"rocketchat": await asked} if asked is not None else {})
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return json_response(body, 200 if ready else 503)


async def _rocketchat_check(rocketchat: RocketChat) -> dict[str, Any]:
    reason = await rocketchat.unreachable()
    return {"ok": reason is None, "error": None if reason is None else reason[:_ERROR_CHARS]}
