"""Typed keys of the application's state (aiohttp ``AppKey``)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from activeusers.settings import Settings
from api.activity import Activity
from api.auth import Access
from api.metrics import ApiMetrics
from api.tokens import TokenStore

SETTINGS: Final = web.AppKey("settings", Settings)
METRICS: Final = web.AppKey("metrics", ApiMetrics)
# Created by the cleanup context when the app starts, so constructing the app does no I/O.
ACTIVITY: Final = web.AppKey("activity", Activity)
ACCESS: Final = web.AppKey("access", Access)
TOKENS: Final = web.AppKey("tokens", TokenStore)
