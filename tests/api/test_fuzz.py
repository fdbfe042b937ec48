"""Schemathesis against the served ``/api/openapi.json``: generated requests, with and without valid credentials,
never get a 5xx, and every answer conforms to the documented status codes, media types, headers and schemas.

The app runs on a loopback port in a thread of its own (schemathesis' transport is the synchronous ``requests``),
on the real Redis, with the fixed clock of the other API tests, seeded days (so that answers have content) and a
fresh consumer heartbeat (so that ``/readyz`` is legitimately 200 and any 5xx is a failure). Generation is
derandomized, so CI sends the same requests every run. Requests are counted by the test and cross-checked with
the server's own request counter.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from activeusers.heartbeats import Heartbeats
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from api.app import OPENAPI_PATH, create_app
from api.auth import FORGET_USERS, VIEW_ENGAGEMENT_DASHBOARD
from api.dates import is_iso_instant
from api.schemas import ISO_PATTERN
from api.state import TOKENS

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)  # as in conftest
NOW_MS = int(NOW.timestamp() * 1000)
# Per operation, generation mode and credentials: 6 data operations x 2 modes x 4 credential variants x 50, plus
# one request each for the 4 operations without parameters (hypothesis stops once it has tried their only case).
# 50 keeps the run near two minutes on CI's two cores (schemathesis spends ~40 ms of its own per case).
EXAMPLES = 50
MIN_REQUESTS = 1000
DATA_OPERATIONS = frozenset(
    {
        "activeUsers",
        "newUsers",
        "usersByTimeOfTheDayInAWeek",
        "chatBusierHourlyData",
        "chatBusierWeeklyData",
        "activeUsersSummary",
        "activeUsersRetention",
        "activeUsersStickiness",
        "activeUsersBreakdown",
    }
)
# The one data operation that writes: it needs its own permission, and the viewer's token gets its 403.
FORGET = "forgetUsers"
ADMIN = "fuzz-admin-1"
FORGETTER = "fuzz-forgetter-1"
VIEWER = "fuzz-viewer-2"
CREDENTIALS = ("X-User-Id", "X-Auth-Token")


@dataclass
class Served:
    """The app on a loopback port, its event loop in another thread."""

    base_url: str
    loop: asyncio.AbstractEventLoop
    app: web.Application

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)


@dataclass
class Tally:
    """Requests sent, and answers by status, per run (operation / mode / credentials)."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def add(self, run: str, status: int) -> None:
        self.statuses.setdefault(run, Counter())[status] += 1

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())

    def of(self, run: str) -> Counter[int]:
        return self.statuses.get(run, Counter())


@pytest.fixture
def served(base_settings: Settings, redis_client: redis.Redis) -> Iterator[Served]:
    settings = replace(base_settings, retention_days=60)
    seed(settings, redis_client)
    app = create_app(settings, clock=lambda: NOW_MS / 1000)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            started.set()
            await stop.wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(30), "the API did not start"
    host, port = runner.addresses[0][:2]
    yield Served(f"http://{host}:{port}", loop, app)
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    loop.close()


def seed(settings: Settings, client: redis.Redis) -> None:
    """40 days of a few users each (some days empty) in a few hours, some created, and a consumer heartbeat of
    "now"."""
    buckets = UserSets()
    for back in range(40):
        day = NOW.date() - timedelta(days=back)
        for n in range(back % 5):
            buckets.add_active(day, (n * 7 + back) % 24, f"user-{n}-{back % 3}", NOW_MS)
            if n % 2:
                buckets.add_created(day, f"user-{n}-{back % 3}", NOW_MS)
    # The heartbeat must outlive the whole fuzz run (minutes), or /readyz would rightly turn 503 midway.
    long_lived = replace(settings, retention_days=5000, hour_retention_days=5000, consumer_stale_s=3600.0)
    keys = KeySchema(settings.redis_key_prefix, "UTC")
    ActivityWriter(client, keys, long_lived).write(buckets)
    Heartbeats(client, keys, long_lived).beat("fuzz-consumer", {"ts_ms": NOW_MS}, NOW_MS)


def fuzz(
    operation: Any, mode: GenerationMode, credentials: dict[str, str] | None, run: str, base_url: str, tally: Tally
) -> None:
    """Up to EXAMPLES generated requests of one operation; raises on the first failed check.

    ``credentials`` None: whatever schemathesis generates for the security headers (random, so unknown);
    empty: the security headers removed; else those headers, fixed.
    """
    session = requests.Session()
    strategy = operation.as_strategy(generation_mode=mode, headers=credentials or None)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy)
    def send(case: Any) -> None:
        if credentials == {} and case.headers:
            for name in CREDENTIALS:
                case.headers.pop(name, None)
        response = case.call(base_url=base_url, session=session, timeout=10)
        tally.add(run, response.status_code)
        case.validate_response(response, checks=CHECKS)

    try:
        send()
    finally:
        session.close()


@pytest.mark.slow  # a property-based walk of every operation
def test_schemathesis(served: Served) -> None:
    store = served.app[TOKENS]
    admin_token, _ = served.run(store.create(ADMIN, (VIEW_ENGAGEMENT_DASHBOARD,), NOW_MS))
    viewer_token, _ = served.run(store.create(VIEWER, (), NOW_MS))
    forgetter_token, _ = served.run(store.create(FORGETTER, (FORGET_USERS,), NOW_MS))
    variants: dict[str, dict[str, str] | None] = {
        "generated": None,
        "anonymous": {},
        "admin": {"X-User-Id": ADMIN, "X-Auth-Token": admin_token},
        "no-permission": {"X-User-Id": VIEWER, "X-Auth-Token": viewer_token},
        "forgetter": {"X-User-Id": FORGETTER, "X-Auth-Token": forgetter_token},
    }
    # The document as served (schemathesis' from_url would leave out the document's own operation).
    schema = schemathesis.openapi.from_dict(requests.get(served.base_url + OPENAPI_PATH, timeout=10).json())
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        op_id = operation.definition.raw["operationId"]
        if op_id in DATA_OPERATIONS or op_id == FORGET:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for name, credentials in variants.items():
                    fuzz(operation, mode, credentials, f"{op_id}/{mode.value}/{name}", served.base_url, tally)
        else:
            # No parameters and no security: nothing to negate, one case to send.
            fuzz(operation, GenerationMode.POSITIVE, None, f"{op_id}/positive", served.base_url, tally)

    print(f"\nschemathesis: {tally.total} requests; statuses per run: {tally.statuses}")
    # 4 operational endpoints and the dashboard's 3 (page, asset, redirect) are public and parameterless.
    assert len(operations) == len(DATA_OPERATIONS) + 1 + 7
    assert tally.total >= MIN_REQUESTS
    assert all(status < 500 for counter in tally.statuses.values() for status in counter)
    for op_id in (*DATA_OPERATIONS, FORGET):
        allowed, refused = ("forgetter", "admin") if op_id == FORGET else ("admin", "forgetter")
        for mode in ("positive", "negative"):
            # Without valid credentials nothing passes authentication; without the permission, nothing passes it.
            assert set(tally.of(f"{op_id}/{mode}/generated")) == {401}
            assert set(tally.of(f"{op_id}/{mode}/anonymous")) == {401}
            assert set(tally.of(f"{op_id}/{mode}/no-permission")) == {403}
            assert set(tally.of(f"{op_id}/{mode}/{refused}")) == {403}
        # Valid credentials: generated valid input reaches the handlers (most of it), invalid input the 400.
        positive = tally.of(f"{op_id}/positive/{allowed}")
        assert positive[200] >= sum(positive.values()) // 2
        assert set(tally.of(f"{op_id}/negative/{allowed}")) <= {200, 400}
        assert tally.of(f"{op_id}/negative/{allowed}")[400] > 0
    for op_id in ("healthz", "readyz", "metrics", "openapi"):
        assert tally.of(f"{op_id}/positive") == Counter({200: 1})
    # The server counted at least as many requests as the test sent.
    metrics = requests.get(served.base_url + "/metrics", timeout=10).text
    counted = sum(float(v) for v in re.findall(r"^activeusers_api_requests_total\{.*\} (\S+)$", metrics, re.M))
    assert counted >= tally.total


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999000)))
@settings(max_examples=300, derandomize=True, database=None)
def test_the_documented_date_pattern_admits_every_valid_instant(moment: datetime) -> None:
    # The pattern narrows what fuzzers and clients generate; it must never exclude a valid value.
    value = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
    assert is_iso_instant(value)
    assert re.fullmatch(ISO_PATTERN, value)


@pytest.mark.parametrize("value", ["0000-01-01T00:00:00.000Z", "2024-02-29T23:59:59.999Z", "9999-12-31T23:59:59.999Z"])
def test_the_documented_date_pattern_admits_the_extremes(value: str) -> None:
    assert is_iso_instant(value)
    assert re.fullmatch(ISO_PATTERN, value)


@pytest.mark.parametrize(
    "value",
    [
        "2023-10-05T24:00:00.000Z",
        "2023-13-01T00:00:00.000Z",
        "2023-00-10T00:00:00.000Z",
        "2023-10-00T00:00:00.000Z",
        "2023-10-32T00:00:00.000Z",
        "2023-10-05T23:60:00.000Z",
        "2023-10-05T23:00:60.000Z",
        "2023-10-05T14:48:00Z",
        "2023-10-05T14:48:00.000+00:00",
    ],
)
def test_the_documented_date_pattern_refuses_out_of_range_fields(value: str) -> None:
    assert not re.fullmatch(ISO_PATTERN, value)
