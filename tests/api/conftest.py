"""Fixtures of the API tests: an app on the real Redis with a fixed clock, tokens, seeding through the real writer.

Helpers are fixtures (not importable modules) because tests run with ``--import-mode=importlib``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient

from activeusers.reader import ActivityReader
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from api.app import create_app
from api.auth import VIEW_ENGAGEMENT_DASHBOARD
from api.state import TOKENS

# "Now" of every app under test: 2026-03-15T12:00:00.000Z (a Sunday; New York is on EDT since 2026-03-08).
NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
ADMIN = "admin-user-1"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, as bytes and headers, for byte-exact assertions."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


@dataclass
class Api:
    """A started app plus helpers bound to it."""

    client: TestClient[Any, Any]
    settings: Settings

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> Answer:
        return await self.request("GET", path, headers)

    async def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Answer:
        response = await self.client.request(method, path, headers=dict(headers or {}))
        body = await response.read()
        return Answer(response.status, response.headers, body)

    async def token(self, user_id: str, permissions: Iterable[str] = (VIEW_ENGAGEMENT_DASHBOARD,)) -> dict[str, str]:
        """Auth headers of a new token of ``user_id``."""
        token, _ = await self.client.app[TOKENS].create(user_id, tuple(permissions), NOW_MS)
        return {"X-User-Id": user_id, "X-Auth-Token": token}


@pytest.fixture
def now_ms() -> int:
    return NOW_MS


@pytest.fixture
def base_settings(redis_url: str, redis_prefix: str) -> Settings:
    return Settings(redis_url=redis_url, redis_key_prefix=redis_prefix)


@pytest.fixture
def make_api(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], base_settings: Settings
) -> Callable[..., Awaitable[Api]]:
    """``await make_api(**settings_overrides)``: an app with the fixed clock, started on a test server."""

    async def make(clock: Callable[[], float] = lambda: NOW_MS / 1000, **overrides: Any) -> Api:
        settings = replace(base_settings, **overrides)
        client = await aiohttp_client(create_app(settings, clock=clock))
        return Api(client, settings)

    return make


@pytest.fixture
async def api(make_api: Callable[..., Awaitable[Api]]) -> Api:
    return await make_api()


@pytest.fixture
async def admin(api: Api) -> dict[str, str]:
    return await api.token(ADMIN)


@pytest.fixture
def seed(base_settings: Settings, redis_client: redis.Redis) -> Callable[[Mapping[date, Iterable[str]], str], None]:
    """``seed({day: users}, zone)``: store days in the index with the consumer's real writer (long retention, so
    that days older than an app's retention window still exist and prove they are not read)."""

    def store(days: Mapping[date, Iterable[str]], zone: str = "UTC") -> None:
        settings = replace(base_settings, activity_timezone=zone, retention_days=5000)
        buckets = UserSets()
        for day, users in days.items():
            for user in users:
                buckets.add_active(day, 12, user, NOW_MS)
        ActivityWriter.of(redis_client, settings).write(buckets)

    return store


@pytest.fixture
def seed_users(base_settings: Settings, redis_client: redis.Redis) -> Callable[..., None]:
    """``seed_users(active={(day, hour): users}, created={day: users}, zone=...)``: store hours (and their days)
    and new users with the consumer's real writer (long retention, as ``seed``)."""

    def store(
        active: Mapping[tuple[date, int], Iterable[str]] = {},
        created: Mapping[date, Iterable[str]] = {},
        zone: str = "UTC",
    ) -> None:
        settings = replace(
            base_settings,
            activity_timezone=zone,
            retention_days=5000,
            hour_retention_days=5000,
        )
        buckets = UserSets()
        for (day, hour), users in active.items():
            for user in users:
                buckets.add_active(day, hour, user, NOW_MS)
        for day, users in created.items():
            for user in users:
                buckets.add_created(day, user, NOW_MS)
        ActivityWriter.of(redis_client, settings).write(buckets)

    return store


@dataclass
class StoreReads:
    """What the apps' readers read, in call order: the days whose ids were listed (``ActivityReader.named_bitmaps``,
    one list per call in ``listings``) and the days whose day bitmaps were fetched (by ``named_bitmaps`` and by the
    counting endpoints' masks: ``ActivityReader._day_bitmaps``, behind both)."""

    listings: list[list[date]]
    fetched: list[date]

    @property
    def listed(self) -> list[date]:
        """Every day whose ids were listed, over all calls."""
        return [day for days in self.listings for day in days]

    def clear(self) -> None:
        self.listings.clear()
        self.fetched.clear()


@pytest.fixture
def store_reads(monkeypatch: pytest.MonkeyPatch) -> StoreReads:
    """Spies on the reader's id listings and day-bitmap fetches of every app of the test."""
    reads = StoreReads([], [])
    real_ids, real_bitmaps = ActivityReader.named_bitmaps, ActivityReader._day_bitmaps

    async def named_bitmaps(self: ActivityReader, days: Sequence[date]) -> list[list[bytes]]:
        reads.listings.append(list(days))
        return await real_ids(self, days)

    async def day_bitmaps(
        self: ActivityReader, days: Sequence[date], *also: Any, **kind: Any
    ) -> tuple[list[list[bytes]], Any]:
        reads.fetched.extend(days)
        return await real_bitmaps(self, days, *also, **kind)

    monkeypatch.setattr(ActivityReader, "named_bitmaps", named_bitmaps)
    monkeypatch.setattr(ActivityReader, "_day_bitmaps", day_bitmaps)
    return reads
