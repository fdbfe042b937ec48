"""``GET /healthz`` (the process answers) and ``GET /readyz`` (Redis answers and a consumer is alive)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from activeusers.errors import StoreUnavailable
from api.responses import json_response
from api.state import ACTIVITY

# Bounds what a Redis error message adds to a public answer.
_ERROR_CHARS = 200


async def healthz(request: web.Request) -> web.Response:
    """Always OK while the process serves requests."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis answers and the freshest consumer heartbeat is younger than ``CONSUMER_STALE``."""
    activity = request.app[ACTIVITY]
    redis: dict[str, Any] = {"ok": True, "error": None}
    consumer: dict[str, Any] = {"ok": False, "ageSeconds": None, "members": 0}
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
    body = {"status": "ok" if ready else "unavailable", "checks": {"redis": redis, "consumer": consumer}}
    return json_response(body, 200 if ready else 503)
