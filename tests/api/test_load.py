"""One ``active-users serve`` process under 500 concurrent requests: against the real Redis (single and cluster)
every answer is the exact 200, with far fewer Redis connections than requests (they wait for one instead of
failing); with Redis down or silent every answer is the documented 503, quickly; past API_MAX_IN_FLIGHT the
surplus is refused at once with the overload 503.

The client opens one connection per request (500 sockets at once); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from activeusers.connections import redis_client
from activeusers.settings import Settings
from activeusers.usersets import UserSets
from activeusers.writer import ActivityWriter
from api.errors import OVERLOADED, UNAVAILABLE
from tests.support.processes import cli_token, consumer_env, start_api

pytestmark = pytest.mark.slow  # hundreds of concurrent requests against API processes

CONCURRENT = 500
# Whole requests, sent together, must all be answered within this (a bound, not a speed target).
ANSWERED_WITHIN_S = 60
ACTIVE = "/api/v1/engagement-dashboard/users/active-users"
SUMMARY = "/api/v1/active-users/summary"
UNAVAILABLE_BODY = orjson.dumps({"success": False, "error": UNAVAILABLE})
OVERLOADED_BODY = orjson.dumps({"success": False, "error": OVERLOADED})
# Days of the seeded data: a week and more before today, so that the answers do not depend on the clock.
LAST = datetime.now(UTC).date() - timedelta(days=8)
DAYS = {LAST - timedelta(days=n): {f"user-{n}-{i:03d}" for i in range(40 + 30 * n)} for n in range(3)}
DAYS[LAST] |= {"user-1-000", "user-2-007"}  # users active on several days count once in the windows


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    retry_after: str | None
    seconds: float


def url_range(path: str, first: date, last: date) -> str:
    return f"{path}?start={first.isoformat()}T00:00:00.000Z&end={last.isoformat()}T23:59:59.999Z"


def expected_active_users(first: date, last: date) -> bytes:
    month = [
        {"usersList": sorted(users), "users": len(users), "day": d.day, "month": d.month, "year": d.year}
        for d, users in sorted(DAYS.items(), reverse=True)
        if first <= d <= last
    ]
    return orjson.dumps({"month": month, "success": True})


def expected_summary(first: date, last: date) -> bytes:
    def union(end: date, width: int) -> set[str]:
        return set().union(*(DAYS.get(end - timedelta(days=n), set()) for n in range(width)))

    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    rows = [
        {"date": d.isoformat(), "dau": len(DAYS.get(d, ())), "wau": len(union(d, 7)), "mau": len(union(d, 30))}
        for d in days
    ]
    distinct = set().union(*(DAYS.get(d, set()) for d in days))
    body = {
        "timezone": "UTC",
        "start": first.isoformat(),
        "end": last.isoformat(),
        "distinctUsers": len(distinct),
        "days": rows,
        "success": True,
    }
    return orjson.dumps(body)


def seed(settings: Settings) -> None:
    """Store DAYS with the consumer's real writer (a single Redis or a cluster, as the settings say)."""
    client = redis_client(settings)
    try:
        buckets = UserSets()
        for day, users in DAYS.items():
            for user in users:
                buckets.add_active(day, 12, user, int(time.time() * 1000))
        ActivityWriter.of(client, settings).write(buckets)
    finally:
        client.close()


async def fire(base: str, requests: list[tuple[str, Mapping[str, str]]]) -> list[Answer]:
    """Send every request at once, each on its own connection, and wait for every answer (bounded)."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=ANSWERED_WITHIN_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = asyncio.Event()

        async def one(path: str, headers: Mapping[str, str]) -> Answer:
            await start.wait()
            sent = time.monotonic()
            async with session.get(base + path, headers=dict(headers)) as response:
                body = await response.read()
                return Answer(response.status, body, response.headers.get("Retry-After"), time.monotonic() - sent)

        tasks = [asyncio.create_task(one(path, headers)) for path, headers in requests]
        await asyncio.sleep(0)  # every task waits at the start line, then all go in the same turn
        start.set()
        async with asyncio.timeout(ANSWERED_WITHIN_S):
            return await asyncio.gather(*tasks)


def metric(base: str, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(env) -> base URL``: ``active-users serve`` child processes, stopped after the test."""
    started: list[Any] = []

    def start(env: dict[str, str]) -> str:
        process, base = start_api({**env, "LOG_LEVEL": "WARNING"}, tmp_path / f"api-{len(started)}.log")
        started.append(process)
        return base

    yield start
    for process in started:
        process.terminate()
        process.wait(15)


def mixed_requests(headers: Mapping[str, str]) -> tuple[list[tuple[str, Mapping[str, str]]], list[bytes]]:
    """CONCURRENT requests over active-users (one day, three days) and the summary, with their exact bodies."""
    first = LAST - timedelta(days=2)
    kinds = [
        (url_range(ACTIVE, LAST, LAST), expected_active_users(LAST, LAST)),
        (url_range(ACTIVE, first, LAST), expected_active_users(first, LAST)),
        (url_range(SUMMARY, first - timedelta(days=1), LAST), expected_summary(first - timedelta(days=1), LAST)),
    ]
    chosen = [kinds[n % len(kinds)] for n in range(CONCURRENT)]
    return [(path, headers) for path, _ in chosen], [body for _, body in chosen]


def test_500_concurrent_requests_all_get_the_exact_200(stack, redis_prefix, serve, tmp_path):
    env = consumer_env(stack, "unused", redis_prefix, "unused", REDIS_POOL_SIZE="4")
    seed(Settings(redis_url=stack.redis_url, redis_key_prefix=redis_prefix))
    base = serve(env)
    requests, bodies = mixed_requests(cli_token(env, "load-admin"))
    answers = asyncio.run(fire(base, requests))
    assert [(a.status, a.body) for a in answers] == [(200, body) for body in bodies]
    # The small reads of concurrent requests went to Redis together (token and versions: two per request).
    assert metric(base, "activeusers_api_redis_batched_reads_total") >= 2 * CONCURRENT
    assert metric(base, "activeusers_api_redis_batches_total") < CONCURRENT
    assert "store unavailable" not in (tmp_path / "api-0.log").read_text()


def test_500_concurrent_requests_on_a_redis_cluster_all_get_the_exact_200(stack, redis_cluster, cluster_prefix, serve):
    env = consumer_env(stack, "unused", cluster_prefix, "unused", REDIS_POOL_SIZE="2")
    env.update(REDIS_URL=redis_cluster, REDIS_CLUSTER="true")
    seed(Settings(redis_url=redis_cluster, redis_cluster=True, redis_key_prefix=cluster_prefix))
    base = serve(env)
    requests, bodies = mixed_requests(cli_token(env, "load-admin"))
    answers = asyncio.run(fire(base, requests))
    assert [(a.status, a.body) for a in answers] == [(200, body) for body in bodies]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers: a hung Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def unauthenticated_flood(count: int) -> list[tuple[str, Mapping[str, str]]]:
    headers = {"X-User-Id": "someone", "X-Auth-Token": "t" * 43}
    return [(url_range(SUMMARY, LAST, LAST), headers)] * count


@pytest.mark.parametrize("redis", ["refused", "silent"])
def test_a_redis_that_does_not_answer_is_the_documented_503_quickly(stack, redis_prefix, serve, silent_redis, redis):
    url = f"redis://127.0.0.1:{free_port()}/0" if redis == "refused" else silent_redis
    env = consumer_env(stack, "unused", redis_prefix, "unused", REDIS_POOL_SIZE="4")
    env.update(REDIS_URL=url, REDIS_TIMEOUT="500ms", REDIS_POOL_WAIT="500ms")
    base = serve(env)
    started = time.monotonic()
    answers = asyncio.run(fire(base, unauthenticated_flood(CONCURRENT)))
    assert {(a.status, a.body, a.retry_after) for a in answers} == {(503, UNAVAILABLE_BODY, "1")}
    # Each waits at most for a connection (REDIS_POOL_WAIT) and then for Redis (REDIS_TIMEOUT): 1 s here, with no
    # pile-up of timeouts however many requests came at once (2 s of slack for a loaded machine).
    assert max(a.seconds for a in answers) < 3
    assert time.monotonic() - started < 10


def test_past_api_max_in_flight_the_surplus_is_refused_at_once(stack, redis_prefix, serve, silent_redis):
    env = consumer_env(stack, "unused", redis_prefix, "unused", REDIS_POOL_SIZE="4")
    env.update(REDIS_URL=silent_redis, REDIS_TIMEOUT="500ms", REDIS_POOL_WAIT="500ms", API_MAX_IN_FLIGHT="20")
    base = serve(env)
    answers = asyncio.run(fire(base, unauthenticated_flood(200)))
    refused = [a for a in answers if a.body == OVERLOADED_BODY]
    waited = [a for a in answers if a.body == UNAVAILABLE_BODY]
    assert len(refused) + len(waited) == len(answers)
    assert {(a.status, a.retry_after) for a in answers} == {(503, "1")}
    # At most 20 were worked on (each held by the silent Redis for its timeouts), the rest refused before any work.
    assert 0 < len(waited) <= 20 + 5  # a few admitted ones may end before the last requests arrive
    assert max(a.seconds for a in refused) < min(a.seconds for a in waited)
    # /healthz is not counted: a probe sees the process alive while it refuses data requests.
    assert asyncio.run(fire(base, [("/healthz", {})]))[0].status == 200
