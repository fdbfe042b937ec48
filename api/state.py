"""Typed keys of the application's and requests' state (aiohttp ``AppKey``/``RequestKey``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aiohttp import web

from activeusers.keys import KeySchema
from activeusers.reader import ActivityReader
from activeusers.settings import Settings
from api.daycache import DayCache
from api.metrics import ApiMetrics
from api.ratelimit import RateLimiter
from api.tokens import TokenStore

SETTINGS: Final = web.AppKey("settings", Settings)
CLOCK: Final[web.AppKey[Callable[[], float]]] = web.AppKey("clock")
KEYS: Final = web.AppKey("keys", KeySchema)
METRICS: Final = web.AppKey("metrics", ApiMetrics)
DAY_CACHE: Final = web.AppKey("day_cache", DayCache)
# Created by the cleanup context when the app starts, so constructing the app does no I/O.
READER: Final = web.AppKey("reader", ActivityReader)
TOKENS: Final = web.AppKey("tokens", TokenStore)
LIMITER: Final = web.AppKey("limiter", RateLimiter)


def now_ms(app: web.Application) -> int:
    """The app clock's current instant in epoch milliseconds."""
    return int(app[CLOCK]() * 1000)
