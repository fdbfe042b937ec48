"""``GET /metrics`` (Prometheus) and ``GET /api/openapi.json`` (the API's own description)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from api.openapi import document, route_paths
from api.responses import NO_STORE, json_response
from api.state import METRICS, SETTINGS


async def metrics(request: web.Request) -> web.Response:
    """The app's metrics in Prometheus' text format."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 document of every endpoint."""
    return json_response(document(route_paths(request.app), request.app[SETTINGS].indexed_properties))
