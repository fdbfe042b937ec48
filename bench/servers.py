"""Comparison servers for the benchmarks, each one aiohttp process like ``active-users serve``.

``naive``: the straightforward implementation the query benchmark compares with. Same URLs and the same JSON
bodies as the service for the ranges the benchmark asks (whole UTC days inside retention), built the obvious way:
redis-py's asyncio client with ``decode_responses=True`` (hiredis decodes in C, the common idiom), one
``SMEMBERS`` round trip per day in sequence, ``sorted`` ids, WAU/MAU as unions of the 7 and 30 day sets, and the
standard library's ``json.dumps``. No authentication, no validation, no clipping: it does strictly less than the
service, so the comparison cannot flatter the service.

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

import redis.asyncio as aioredis
from aiohttp import web

from activeusers.keys import KeySchema

CLIENT = web.AppKey("client", aioredis.Redis)
KEYS = web.AppKey("keys", KeySchema)


def _days(request: web.Request) -> list[date]:
    first = datetime.fromisoformat(request.query["start"]).date()
    last = datetime.fromisoformat(request.query["end"]).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


async def _members(request: web.Request, day: date) -> set[str]:
    members: set[str] = await request.app[CLIENT].smembers(request.app[KEYS].day(day))
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
    if len(sys.argv) != 2 or sys.argv[1] not in ("naive", "trivial"):
        sys.exit(__doc__)
    asyncio.run(serve(sys.argv[1]))
