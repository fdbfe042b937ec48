"""Comparison servers for the benchmarks, each one aiohttp process like ``active-users serve``.

``naive``: the straightforward implementation the query benchmark compares with. Same URLs and the same JSON
bodies as the service for the ranges the benchmark asks (whole UTC days inside retention), built the obvious way:
redis-py's asyncio client with ``decode_responses=True`` (hiredis decodes in C, the common idiom), one
``SMEMBERS`` round trip per day in sequence, ``sorted`` ids, WAU/MAU as unions of the 7 and 30 day sets, and the
standard library's ``json.dumps``. No authentication, no validation, no clipping: it does strictly less than the
service, so the comparison cannot flatter the service. The Users tab's other four endpoints the same way (UTC
only, whole-day ranges): every new-user, hour or day set they need read with ``SMEMBERS`` and counted in Python,
hourly-data's two-hour slots as Python set unions.

The naive server keeps its own data: SETs of ids per day, hour and new-user day, named by the ``old_*`` methods of
``KeySchema`` (the layout before the index, which the service no longer writes), under the same prefix as the
service's keys. :func:`write_sets` writes them from the same seeded dataset the service's writer stored.

``trivial``: one handler answering ``{"success":true}`` with ``web.json_response``: the ceiling of aiohttp on
this machine, for the throughput benchmark.

Usage: python bench/servers.py naive|trivial (REDIS_URL, REDIS_KEY_PREFIX, API_HOST, API_PORT from the
environment; API_PORT=0 picks a free port). Logs one JSON line with the URL, like the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import redis
import redis.asyncio as aioredis
from aiohttp import web
from dataset import Dataset, activity

from activeusers.keys import KeySchema

CLIENT = web.AppKey("client", aioredis.Redis)
KEYS = web.AppKey("keys", KeySchema)


# Members per SADD when writing the naive server's sets.
SADD_CHUNK = 1_000


def write_sets(redis_url: str, prefix: str, data: Dataset, last_day: date) -> None:
    """The naive server's own data: the dataset (days ending ``last_day``, UTC) as SETs of ids per day, hour and
    new-user day, under ``prefix`` (deleted with the prefix's other keys)."""
    keys = KeySchema(prefix, "UTC")
    client = redis.Redis.from_url(redis_url)
    try:
        for today in activity(data, last_day):
            sets: dict[str, list[str]] = {keys.old_day(today.day): [user for user, _ in today.active]}
            for user, hour in today.active:
                sets.setdefault(keys.old_hour(today.day, hour), []).append(user)
            if today.created:
                sets[keys.old_new_users(today.day)] = today.created
            pipe = client.pipeline(transaction=False)
            for key, members in sets.items():
                for start in range(0, len(members), SADD_CHUNK):
                    pipe.sadd(key, *members[start : start + SADD_CHUNK])
            pipe.execute()
    finally:
        client.close()


def _days(request: web.Request) -> list[date]:
    first = datetime.fromisoformat(request.query["start"]).date()
    last = datetime.fromisoformat(request.query["end"]).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


async def _members(request: web.Request, day: date) -> set[str]:
    members: set[str] = await request.app[CLIENT].smembers(request.app[KEYS].old_day(day))
    return members


def _json(payload: object) -> web.Response:
    return web.Response(text=json.dumps(payload, separators=(",", ":")), content_type="application/json")


async def active_users(request: web.Request) -> web.Response:
    month = []
    for day in reversed(_days(request)):
        users = await _members(request, day)
        if users:
            month.append(
                {"usersList": sorted(users), "users": len(users), "day": day.day, "month": day.month, "year": day.year}
            )
    return _json({"month": month, "success": True})


async def summary(request: web.Request) -> web.Response:
    days = _days(request)
    lookback = [days[0] - timedelta(days=n) for n in range(29, 0, -1)]
    sets = {day: await _members(request, day) for day in lookback + days}

    def union(last: date, count: int) -> set[str]:
        return set().union(*(sets[last - timedelta(days=n)] for n in range(count)))

    rows = [
        {"date": d.isoformat(), "dau": len(sets[d]), "wau": len(union(d, 7)), "mau": len(union(d, 30))} for d in days
    ]
    return _json(
        {
            "timezone": "UTC",
            "start": days[0].isoformat(),
            "end": days[-1].isoformat(),
            "distinctUsers": len(set().union(*(sets[d] for d in days))),
            "days": rows,
            "success": True,
        }
    )


async def _sizes(request: web.Request, keys: list[str]) -> list[int]:
    """The naive count: every set's members read (one SMEMBERS each, in sequence) and counted in Python."""
    client = request.app[CLIENT]
    return [len(await client.smembers(key)) for key in keys]


def _instant(request: web.Request, name: str) -> datetime:
    return datetime.fromisoformat(request.query[name].replace("Z", "+00:00"))


async def new_users(request: web.Request) -> web.Response:
    start, end = _instant(request, "start"), _instant(request, "end")
    limit = int((end - start) / timedelta(days=1)) + 1
    first, last = start.date(), end.date()
    span = [first - timedelta(days=1 + limit) + timedelta(days=i) for i in range((last - first).days + limit + 2)]
    sizes = dict(zip(span, await _sizes(request, [request.app[KEYS].old_new_users(d) for d in span]), strict=True))
    days = [(d, sizes[d]) for d in sorted(span, reverse=True) if first <= d <= last and sizes[d]][:limit]
    previous = [sizes[d] for d in sorted(span, reverse=True) if d < first and sizes[d]][:limit]
    listed = dict(days)
    total = sum(listed.values())
    yesterday = listed.get(last - timedelta(days=1), 0)
    return _json(
        {
            "days": [{"day": f"{d.isoformat()}T00:00:00.000Z", "users": n} for d, n in days],
            "period": {"count": total, "variation": total - sum(previous)},
            "yesterday": {"count": yesterday, "variation": listed.get(last, 0) - yesterday},
            "success": True,
        }
    )


async def users_by_time_of_day(request: web.Request) -> web.Response:
    hours = [(d, h) for d in _days(request) for h in range(24)]
    sizes = await _sizes(request, [request.app[KEYS].old_hour(d, h) for d, h in hours])
    week = [
        {"users": n, "hour": h, "day": d.day, "month": d.month, "year": d.year}
        for (d, h), n in sorted(zip(hours, sizes, strict=True), reverse=True)
        if n
    ]
    return _json({"week": week, "success": True})


async def hourly_data(request: web.Request) -> web.Response:
    start = _instant(request, "start")
    newest = start.replace(minute=0, second=0, microsecond=0)
    window = [newest - timedelta(hours=i) for i in range(24)]
    client = request.app[CLIENT]
    members = {(t.date(), t.hour): await client.smembers(request.app[KEYS].old_hour(t.date(), t.hour)) for t in window}
    slots = []
    for hour in range(22, -1, -2):
        union: set[str] = set()
        for (_, h), users in members.items():
            if h in (hour, hour + 1):
                union |= users
        slots.append({"users": len(union), "hour": hour})
    return _json({"hours": slots if any(s["users"] for s in slots) else [], "success": True})


async def weekly_data(request: web.Request) -> web.Response:
    last = _instant(request, "start").date()
    days = [last - timedelta(days=n) for n in range(8)]
    sizes = await _sizes(request, [request.app[KEYS].old_day(d) for d in days])
    month = [
        {"users": n, "day": d.day, "month": d.month, "year": d.year} for d, n in zip(days, sizes, strict=True) if n
    ]
    return _json({"month": month, "success": True})


async def trivial(request: web.Request) -> web.Response:
    return web.json_response({"success": True})


async def _redis(app: web.Application) -> AsyncIterator[None]:
    app[CLIENT] = aioredis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield
    await app[CLIENT].aclose()


def build(kind: str) -> web.Application:
    app = web.Application()
    if kind == "trivial":
        app.router.add_get("/", trivial)
        return app
    app[KEYS] = KeySchema(os.environ.get("REDIS_KEY_PREFIX", "au:"), "UTC")
    app.cleanup_ctx.append(_redis)
    app.router.add_get("/api/v1/engagement-dashboard/users/active-users", active_users)
    app.router.add_get("/api/v1/active-users/summary", summary)
    users = "/api/v1/engagement-dashboard/users/"
    app.router.add_get(users + "new-users", new_users)
    app.router.add_get(users + "users-by-time-of-the-day-in-a-week", users_by_time_of_day)
    app.router.add_get(users + "chat-busier/hourly-data", hourly_data)
    app.router.add_get(users + "chat-busier/weekly-data", weekly_data)
    return app


async def serve(kind: str) -> None:
    runner = web.AppRunner(build(kind), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, os.environ.get("API_HOST", "127.0.0.1"), int(os.environ.get("API_PORT", "0")))
    await site.start()
    host, port = runner.addresses[0][:2]
    print(json.dumps({"event": f"{kind} server started", "url": f"http://{host}:{port}"}), flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print("usage: " + __doc__.strip())
        sys.exit(0)
    if len(sys.argv) != 2 or sys.argv[1] not in ("naive", "trivial"):
        sys.exit(__doc__)
    asyncio.run(serve(sys.argv[1]))
