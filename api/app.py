"""The application factory: routes, middlewares and the Redis pool's lifetime."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from activeusers.coalescer import Coalescer
from activeusers.connections import async_redis_client
from activeusers.days import days_between, hour_spans, retained_days
from activeusers.erasure import Eraser
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.reader import ActivityReader
from activeusers.settings import Settings
from api import page
from api.activity import Activity
from api.admission import Admission
from api.auth import ROCKETCHAT_PERMISSIONS, Access
from api.daycache import DayCache
from api.errors import error_middleware
from api.httplog import server_logger
from api.metrics import ApiMetrics
from api.ratelimit import RateLimiter
from api.rocketchat import RocketChat
from api.routes import breakdown, engagement, forget, health, meta, retention, summary
from api.state import ACCESS, ACTIVITY, METRICS, SETTINGS, TOKENS
from api.tokens import TokenStore

OPENAPI_PATH: Final = "/api/openapi.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    """One route: its name (the OpenAPI ``operationId``), path and handler, whether it is a data route
    (authenticated, no HEAD) or a public operational one, its method, and the largest body it reads."""

    name: str
    path: str
    handler: Handler
    guarded: bool
    method: str = "GET"
    body_bytes: int = 0


# The one list of routes: the router is built from it, and the OpenAPI document takes its paths from the router.
ROUTES: Final = (
    Route("activeUsers", engagement.ACTIVE_USERS, engagement.active_users, True),
    Route("newUsers", engagement.NEW_USERS, engagement.new_users, True),
    Route("usersByTimeOfTheDayInAWeek", engagement.BY_TIME_OF_DAY, engagement.users_by_time_of_day, True),
    Route("chatBusierHourlyData", engagement.HOURLY, engagement.hourly_data, True),
    Route("chatBusierWeeklyData", engagement.WEEKLY, engagement.weekly_data, True),
    Route("activeUsersSummary", summary.PATH, summary.summary, True),
    Route("activeUsersRetention", retention.RETENTION, retention.retention, True),
    Route("activeUsersStickiness", retention.STICKINESS, retention.stickiness, True),
    Route("activeUsersBreakdown", breakdown.PATH, breakdown.breakdown, True),
    Route("forgetUsers", forget.PATH, forget.forget, True, "POST", forget.MAX_BODY_BYTES),
    Route("healthz", "/healthz", health.healthz, False),
    Route("readyz", "/readyz", health.readyz, False),
    Route("metrics", "/metrics", meta.metrics, False),
    Route("openapi", OPENAPI_PATH, meta.openapi, False),
    Route("dashboard", "/dashboard", page.dashboard, False),
    Route("dashboardAsset", page.ASSET_PREFIX + "{path:[0-9a-f]{16}/[A-Za-z0-9_./-]+}", page.asset, False),
    Route("root", "/", page.root, False),
)
# Only forget reads a request body; anything bigger than this (or than a route's own body_bytes) is refused
# before it is buffered.
MAX_BODY_BYTES: Final = 1024
BODY_BYTES: Final = {route.name: route.body_bytes for route in ROUTES if route.body_bytes}


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The API application; no I/O happens until it starts (the Redis pool opens in ``cleanup_ctx``).

    ``clock`` returns epoch seconds; tests pass a fixed one to pin "today".
    """
    cache = DayCache(settings.api_cache_bytes, settings.api_cache_ttl_s)
    admission = Admission(settings.api_max_in_flight)
    metrics = ApiMetrics(cache, admission)
    app = web.Application(
        middlewares=[metrics.middleware(), error_middleware, _refuse_bodies],
        client_max_size=max(MAX_BODY_BYTES, *BODY_BYTES.values()),
        # aiohttp's parser limits stay at their defaults (header line and field 8190 bytes, 128 headers): far
        # above any real token or user id, and bigger ones are refused before the app sees them.
        handler_args={"logger": server_logger()},
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[page.PAGE] = page.Page()
    app.cleanup_ctx.append(functools.partial(_redis_pool, cache=cache, clock=clock))
    for route in ROUTES:
        handler = admission.admitted(route.handler) if route.guarded else route.handler
        if route.method == "GET":
            app.router.add_get(route.path, handler, name=route.name, allow_head=not route.guarded)
        else:
            app.router.add_route(route.method, route.path, handler, name=route.name)
    return app


@web.middleware
async def _refuse_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    # client_max_size only applies when a handler reads the body, and only forget does: refuse big ones up front,
    # each route at its own limit.
    limit = BODY_BYTES.get(request.match_info.route.name or "", MAX_BODY_BYTES)
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    return await handler(request)


async def _warm_up(reader: ActivityReader, settings: Settings, clock: Callable[[], float]) -> None:
    """Make the first request as fast as the next: a pooled connection open and the hour
    buckets of the hour-retention window computed. Best effort: an API whose Redis is down still starts (its
    readiness check says so) and pays these costs on its first request instead."""
    now_ms = int(clock() * 1000)
    first, last = retained_days(now_ms, settings.zone, settings.retention("hours"))
    for day in days_between(first, last):
        hour_spans(day, settings.zone)
    try:
        await reader.ping()
    except StoreUnavailable as exc:
        log.warning("Redis not reachable at startup", extra={"error": str(exc)})


async def _redis_pool(app: web.Application, *, cache: DayCache, clock: Callable[[], float]) -> AsyncIterator[None]:
    """The Redis pool's lifetime (and the Rocket.Chat client's), and the objects that ask through them: the app's
    :class:`Activity` and :class:`Access`."""
    settings = app[SETTINGS]
    keys = KeySchema.of(settings)
    client = async_redis_client(settings)
    coalescer = Coalescer(client, settings.redis_timeout_s)
    app[METRICS].track_redis(client, coalescer)
    reader = ActivityReader(client, keys, coalescer)
    app[METRICS].track_reader(reader)
    app[ACTIVITY] = Activity(reader, cache, settings, clock, Eraser(client, settings, clock))
    app[TOKENS] = tokens = TokenStore(client, keys, coalescer)
    limiter = RateLimiter(client, keys, settings.api_rate_limit, settings.api_rate_limit_window_s)
    rocketchat = await _rocketchat(settings)
    app[ACCESS] = Access(tokens, limiter, clock, rocketchat)
    await _warm_up(reader, settings, clock)
    yield
    if rocketchat is not None:
        await rocketchat.aclose()
    await coalescer.aclose()
    await client.aclose()


async def _rocketchat(settings: Settings) -> RocketChat | None:
    """The client of ``ROCKETCHAT_URL`` when it is set. A Rocket.Chat that does not answer yet is a warning, not a
    failure: our own tokens work without it, and /readyz says so."""
    if not settings.rocketchat_url:
        return None
    rocketchat = RocketChat(settings, ROCKETCHAT_PERMISSIONS)
    await rocketchat.open()
    reason = await rocketchat.unreachable()
    if reason is not None:
        log.warning("Rocket.Chat not reachable at startup", extra={"error": reason})
    return rocketchat
