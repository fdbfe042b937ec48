"""Admission of data requests: at most ``API_MAX_IN_FLIGHT`` in progress in one API process; the next one is
refused at once with the 503 of :class:`~api.errors.Overloaded` (``Retry-After: 1``).

Below the bound a burst queues (each request waits for what it needs, a Redis connection within
``REDIS_POOL_WAIT``); past it, queueing more would only make every request slower until they all time out
together. Refusing the surplus before any work (no token check, no Redis) keeps the admitted ones at full speed
and tells the surplus, honestly and cheaply, to come back. The operational routes (``/healthz``, ``/readyz``,
``/metrics``, the dashboard's files) are not counted: a load balancer's probe must see the process alive while it
is busy.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from activeusers.logs import Throttle
from api.errors import Overloaded

log = logging.getLogger(__name__)
# Under overload every refused request would log: one line per interval says it, with how many were left out.
REFUSAL_LOG_INTERVAL_S = 10.0


class Admission:
    """Counts the data requests in progress and refuses those past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0
        if not any(isinstance(f, Throttle) for f in log.filters):
            log.addFilter(Throttle(REFUSAL_LOG_INTERVAL_S))

    def admitted(self, handler: Handler) -> Handler:
        """``handler`` run only while fewer than ``limit`` requests are in progress, else :class:`Overloaded`."""

        async def bounded(request: web.Request) -> web.StreamResponse:
            if self.in_flight >= self.limit:
                self.refused += 1
                log.warning("request refused: API_MAX_IN_FLIGHT reached", extra={"limit": self.limit})
                raise Overloaded
            self.in_flight += 1
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1

        return bounded
