"""``active-users serve``: run the API on the configured address until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from aiohttp import web

from activeusers.errors import ListenError
from activeusers.settings import Settings
from api.app import create_app

log = logging.getLogger(__name__)

# In-flight requests get this long to finish after a stop signal.
SHUTDOWN_GRACE_S = 10.0


def serve(settings: Settings) -> int:
    """Serve until stopped by a signal; the exit code (0 after a clean stop).

    Raises :class:`ListenError` when ``API_HOST``/``API_PORT`` cannot be listened on (a port already in use).
    """
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    runner = web.AppRunner(create_app(settings), handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    # Start-up's long-lived objects (modules, the app) moved out of the collector's reach are not traversed again
    # by the full collection that a first big answer's allocations would trigger.
    gc.collect()
    gc.freeze()
    try:
        site = web.TCPSite(runner, settings.api_host, settings.api_port)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError("API_HOST", "API_PORT", settings.api_host, settings.api_port, exc) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("api started", extra={"url": _url(runner)})
        await stop.wait()
    finally:
        await runner.cleanup()
    log.info("api stopped")


def _url(runner: web.AppRunner) -> str:
    # The bound address, not the configured one: API_PORT=0 picks a free port.
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
